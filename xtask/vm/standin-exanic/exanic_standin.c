// SPDX-License-Identifier: GPL-2.0
/*
 * exanic_standin: a stand-in for ExaNIC SmartNIC ports, for the exabond VM test bed.
 *
 * TEST FIXTURE ONLY. This module is built by xtask/vm/testbed.sh for the test bed's Debian kernels and
 * loaded inside throw-away qemu guests. It is never built for, packaged for or shipped to users, and it
 * drives no hardware.
 *
 * It shows user space and the bonding driver what they see of a real ExaNIC port (cisco/exanic-software,
 * driver "exanic"), written from scratch:
 *
 *   - `cards` x `ports` Ethernet netdevs named exa<c>p<p> (module parameters, defaults 2 and 2);
 *   - ETHTOOL_GDRVINFO reports driver "exanic" (how libexanic and the exabond agent recognise a port);
 *   - the socket ioctl EXAIOCGIFINFO (SIOCDEVPRIVATE + 0, ifr_data -> struct exaioc_ifinfo below)
 *     answers dev_name "exanic<c>" and port_num <p>;
 *   - dev_port = <p>;
 *   - each card is a platform device "exanic_standin.<c>" bound to a platform driver named "exanic" (the
 *     ports' parent, so /sys/class/net/exa<c>p<p>/device/driver -> .../exanic and ethtool's bus_info is
 *     "exanic_standin.<c>"), and registers a misc device "exanic<c>" without a parent
 *     (/sys/devices/virtual/misc/exanic<c>, /dev/exanic<c>); the misc device offers no operations;
 *   - the MAC address can be changed while the port is up (bonding does that when it enslaves);
 *   - transmitted frames are counted (tx_packets/tx_bytes) and dropped; nothing is ever received.
 *
 * Link (carrier) control for tests, per port, through debugfs:
 *
 *   /sys/kernel/debug/exanic_standin/exa<c>p<p>/carrier
 *       read:  "1\n" or "0\n", the simulated cable state (default 1)
 *       write: "1"/"0" (also y/n, on/off): plug / unplug the simulated cable
 *
 * The netdev's carrier (/sys/class/net/exa<c>p<p>/carrier, netif_carrier_ok) is on exactly when the port
 * is administratively up and the simulated cable is plugged, so a write of 0 to an up port is seen by the
 * bonding driver's miimon as link loss while the port stays admin-up. Unlike the real driver, which polls
 * the link once a second, the change takes effect at once.
 */

#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/mod_devicetable.h>
#include <linux/platform_device.h>
#include <linux/miscdevice.h>
#include <linux/debugfs.h>
#include <linux/rtnetlink.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/fs.h>

#define STANDIN_NAME "exanic_standin"
#define DRV_NAME "exanic"
#define DRV_VERSION "standin-1"
#define MAX_CARDS 16
#define MAX_PORTS 8

static unsigned int cards = 2;
module_param(cards, uint, 0444);
MODULE_PARM_DESC(cards, "number of stand-in cards exanic0.. (1-16, default 2)");

static unsigned int ports = 2;
module_param(ports, uint, 0444);
MODULE_PARM_DESC(ports, "ports per stand-in card (1-8, default 2)");

/* EXAIOCGIFINFO: the user ABI of the real driver (libs/exanic/ioctl.h in exanic-software). */
#define EXAIOCGIFINFO (SIOCDEVPRIVATE + 0)
struct standin_ifinfo {
	char dev_name[16]; /* "exanic<c>", NUL-terminated */
	__u16 port_num;
	char reserved[14];
};

struct standin_card;

struct standin_port {
	struct standin_card *card;
	unsigned int port;
	bool cable; /* simulated link partner present; written under RTNL */
};

struct standin_card {
	unsigned int id;
	char name[16]; /* exanic<c> */
	struct miscdevice misc;
	bool misc_registered;
	struct net_device *ndev[MAX_PORTS];
	struct dentry *dbg;
};

static struct dentry *standin_dbg_root;
static struct platform_device *standin_pdev[MAX_CARDS];

/* ---- netdev ---- */

/* Called under RTNL (open/stop and the debugfs writer take it). */
static void standin_apply_carrier(struct net_device *ndev)
{
	struct standin_port *sp = netdev_priv(ndev);

	if (netif_running(ndev) && sp->cable)
		netif_carrier_on(ndev);
	else
		netif_carrier_off(ndev);
}

static int standin_open(struct net_device *ndev)
{
	standin_apply_carrier(ndev);
	netif_start_queue(ndev);
	return 0;
}

static int standin_stop(struct net_device *ndev)
{
	netif_stop_queue(ndev);
	netif_carrier_off(ndev);
	return 0;
}

static netdev_tx_t standin_xmit(struct sk_buff *skb, struct net_device *ndev)
{
	/* Serialised by the (single) tx queue lock. */
	ndev->stats.tx_packets++;
	ndev->stats.tx_bytes += skb->len;
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;
}

static int standin_siocdevprivate(struct net_device *ndev, struct ifreq *ifr, void __user *data, int cmd)
{
	struct standin_port *sp = netdev_priv(ndev);
	struct standin_ifinfo info;

	if (cmd != EXAIOCGIFINFO)
		return -EOPNOTSUPP;
	memset(&info, 0, sizeof(info));
	strscpy(info.dev_name, sp->card->name, sizeof(info.dev_name));
	info.port_num = sp->port;
	if (copy_to_user(data, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

static const struct net_device_ops standin_netdev_ops = {
	.ndo_open = standin_open,
	.ndo_stop = standin_stop,
	.ndo_start_xmit = standin_xmit,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
	.ndo_siocdevprivate = standin_siocdevprivate,
};

static void standin_get_drvinfo(struct net_device *ndev, struct ethtool_drvinfo *info)
{
	strscpy(info->driver, DRV_NAME, sizeof(info->driver));
	strscpy(info->version, DRV_VERSION, sizeof(info->version));
	if (ndev->dev.parent)
		strscpy(info->bus_info, dev_name(ndev->dev.parent), sizeof(info->bus_info));
}

static const struct ethtool_ops standin_ethtool_ops = {
	.get_drvinfo = standin_get_drvinfo,
	.get_link = ethtool_op_get_link,
};

/* ---- debugfs carrier knob ---- */

static ssize_t standin_carrier_read(struct file *f, char __user *buf, size_t len, loff_t *pos)
{
	struct net_device *ndev = f->private_data;
	struct standin_port *sp = netdev_priv(ndev);
	char s[3];

	s[0] = READ_ONCE(sp->cable) ? '1' : '0';
	s[1] = '\n';
	s[2] = 0;
	return simple_read_from_buffer(buf, len, pos, s, 2);
}

static ssize_t standin_carrier_write(struct file *f, const char __user *buf, size_t len, loff_t *pos)
{
	struct net_device *ndev = f->private_data;
	struct standin_port *sp = netdev_priv(ndev);
	bool on;
	int err;

	err = kstrtobool_from_user(buf, len, &on);
	if (err)
		return err;
	rtnl_lock();
	WRITE_ONCE(sp->cable, on);
	standin_apply_carrier(ndev);
	rtnl_unlock();
	return len;
}

static const struct file_operations standin_carrier_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = standin_carrier_read,
	.write = standin_carrier_write,
	.llseek = default_llseek,
};

/* ---- the card: platform device + misc device ---- */

static const struct file_operations standin_misc_fops = {
	.owner = THIS_MODULE,
	.llseek = noop_llseek,
};

static void standin_card_teardown(struct standin_card *card)
{
	unsigned int p;

	/* debugfs first: no knob may run against a freed netdev. */
	debugfs_remove_recursive(card->dbg);
	card->dbg = NULL;
	for (p = 0; p < MAX_PORTS; p++) {
		if (!card->ndev[p])
			continue;
		unregister_netdev(card->ndev[p]);
		free_netdev(card->ndev[p]);
		card->ndev[p] = NULL;
	}
	if (card->misc_registered)
		misc_deregister(&card->misc);
	card->misc_registered = false;
}

static int standin_probe(struct platform_device *pdev)
{
	struct standin_card *card;
	unsigned int p;
	int err;

	card = devm_kzalloc(&pdev->dev, sizeof(*card), GFP_KERNEL);
	if (!card)
		return -ENOMEM;
	card->id = pdev->id;
	snprintf(card->name, sizeof(card->name), DRV_NAME "%u", card->id);
	card->dbg = debugfs_create_dir(card->name, standin_dbg_root);

	/* Like the real driver: the misc device has no parent (/sys/devices/virtual/misc/exanicN). */
	card->misc.minor = MISC_DYNAMIC_MINOR;
	card->misc.name = card->name;
	card->misc.fops = &standin_misc_fops;
	err = misc_register(&card->misc);
	if (err)
		goto fail;
	card->misc_registered = true;

	for (p = 0; p < ports; p++) {
		struct net_device *ndev;
		struct standin_port *sp;
		char ifname[IFNAMSIZ];
		struct dentry *d;

		snprintf(ifname, sizeof(ifname), "exa%up%u", card->id, p);
		ndev = alloc_netdev(sizeof(*sp), ifname, NET_NAME_PREDICTABLE, ether_setup);
		if (!ndev) {
			err = -ENOMEM;
			goto fail;
		}
		sp = netdev_priv(ndev);
		sp->card = card;
		sp->port = p;
		sp->cable = true;
		SET_NETDEV_DEV(ndev, &pdev->dev);
		ndev->netdev_ops = &standin_netdev_ops;
		ndev->ethtool_ops = &standin_ethtool_ops;
		ndev->dev_port = p;
		ndev->priv_flags |= IFF_LIVE_ADDR_CHANGE; /* the real driver allows MAC changes while up */
		ndev->min_mtu = ETH_MIN_MTU;
		ndev->max_mtu = 9000;
		eth_hw_addr_random(ndev);
		netif_carrier_off(ndev);
		err = register_netdev(ndev);
		if (err) {
			free_netdev(ndev);
			goto fail;
		}
		card->ndev[p] = ndev;
		/* debugfs is best effort; the knob is per port, named like the netdev. */
		d = debugfs_create_dir(ifname, card->dbg);
		debugfs_create_file("carrier", 0600, d, ndev, &standin_carrier_fops);
	}
	platform_set_drvdata(pdev, card);
	dev_info(&pdev->dev, "%s: %u stand-in port(s) (test fixture, no hardware)\n", card->name, ports);
	return 0;

fail:
	standin_card_teardown(card);
	return err;
}

static void standin_remove_card(struct platform_device *pdev)
{
	struct standin_card *card = platform_get_drvdata(pdev);

	if (card)
		standin_card_teardown(card);
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
static void standin_remove(struct platform_device *pdev)
{
	standin_remove_card(pdev);
}
#else
static int standin_remove(struct platform_device *pdev)
{
	standin_remove_card(pdev);
	return 0;
}
#endif

static const struct platform_device_id standin_ids[] = {
	{ .name = STANDIN_NAME },
	{ }
};

/* Named "exanic" so the ports' parent device is bound to a driver of that name, as on real hardware. */
static struct platform_driver standin_driver = {
	.driver = { .name = DRV_NAME },
	.id_table = standin_ids,
	.probe = standin_probe,
	.remove = standin_remove,
};

static void standin_unregister_cards(void)
{
	int c;

	for (c = MAX_CARDS - 1; c >= 0; c--) {
		if (standin_pdev[c])
			platform_device_unregister(standin_pdev[c]);
		standin_pdev[c] = NULL;
	}
}

static int __init standin_init(void)
{
	unsigned int c;
	int err;

	if (cards < 1 || cards > MAX_CARDS || ports < 1 || ports > MAX_PORTS) {
		pr_err(STANDIN_NAME ": cards must be 1-%d and ports 1-%d\n", MAX_CARDS, MAX_PORTS);
		return -EINVAL;
	}
	standin_dbg_root = debugfs_create_dir(STANDIN_NAME, NULL);
	err = platform_driver_register(&standin_driver);
	if (err)
		goto out_dbg;
	for (c = 0; c < cards; c++) {
		struct platform_device *pdev;

		pdev = platform_device_register_simple(STANDIN_NAME, c, NULL, 0);
		if (IS_ERR(pdev)) {
			err = PTR_ERR(pdev);
			goto out_cards;
		}
		standin_pdev[c] = pdev;
		/* A failed probe does not fail the registration: check that the card came up. */
		if (!platform_get_drvdata(pdev)) {
			err = -ENODEV;
			goto out_cards;
		}
	}
	pr_info(STANDIN_NAME ": %u card(s) x %u port(s): test fixture, not a driver for real hardware\n",
		cards, ports);
	return 0;

out_cards:
	standin_unregister_cards();
	platform_driver_unregister(&standin_driver);
out_dbg:
	debugfs_remove_recursive(standin_dbg_root);
	return err;
}

static void __exit standin_exit(void)
{
	standin_unregister_cards();
	platform_driver_unregister(&standin_driver);
	debugfs_remove_recursive(standin_dbg_root);
}

module_init(standin_init);
module_exit(standin_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("exabond test bed");
MODULE_DESCRIPTION("Stand-in ExaNIC ports for the exabond VM test bed (test fixture only, no hardware)");
