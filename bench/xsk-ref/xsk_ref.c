// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Reference AF_XDP receiver for `cargo xtask bench xsk`, written directly on libxdp's
// xsk API the way xdpsock's "rxdrop" does it. It does not load an XDP program of its
// own (XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD): it registers its socket in the XSKMAP that
// `netmit attach` pinned, so netmit's receiver and this one are fed by the same steering
// program and differ only in how they drive the rings.
//
// usage: xsk_ref IFACE QUEUE SECONDS [copy|zerocopy] [poll|spin]
// prints: {"packets":N,"bytes":N,"seconds":S,"pps":P,"rx_dropped":N,"rx_ring_full":N,"fill_empty":N}

#include <errno.h>
#include <linux/if_xdp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <xdp/xsk.h>

#define NUM_FRAMES 4096
#define FRAME_SIZE 4096
#define RING_SIZE 2048
#define BATCH 64

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "xsk_ref: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s IFACE QUEUE SECONDS [copy|zerocopy] [poll|spin] [XSKMAP-PIN]\n", argv[0]);
		return 2;
	}
	const char *ifname = argv[1];
	unsigned queue = atoi(argv[2]);
	double seconds = atof(argv[3]);
	int zerocopy = argc > 4 && strcmp(argv[4], "zerocopy") == 0;
	int use_poll = argc > 5 && strcmp(argv[5], "poll") == 0;

	void *area;
	if (posix_memalign(&area, getpagesize(), (size_t)NUM_FRAMES * FRAME_SIZE))
		die("posix_memalign", errno);

	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq, rx;
	struct xsk_umem *umem;
	struct xsk_umem_config ucfg = {
		.fill_size = RING_SIZE,
		.comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
		.flags = 0,
	};
	int err = xsk_umem__create(&umem, area, (__u64)NUM_FRAMES * FRAME_SIZE, &fq, &cq, &ucfg);
	if (err)
		die("xsk_umem__create", err);

	struct xsk_socket_config cfg = {
		.rx_size = RING_SIZE,
		.tx_size = 0,
		.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
		.xdp_flags = 0,
		.bind_flags = (zerocopy ? XDP_ZEROCOPY : XDP_COPY) | XDP_USE_NEED_WAKEUP,
	};
	struct xsk_socket *xsk;
	/* A socket on this queue may have closed just before: the kernel answers EBUSY for
	 * about a second. */
	for (int tries = 0;; tries++) {
		err = xsk_socket__create(&xsk, ifname, queue, umem, &rx, NULL, &cfg);
		if (err != -EBUSY || tries >= 30)
			break;
		usleep(100 * 1000);
	}
	if (err)
		die("xsk_socket__create", err);

	/* netmit's socket map: the pin path it gives (its pins are keyed by namespace and
	 * ifindex), or netmit 0.1's name-keyed path. */
	char pin[256];
	if (argc > 6)
		snprintf(pin, sizeof(pin), "%s", argv[6]);
	else
		snprintf(pin, sizeof(pin), "/sys/fs/bpf/netmit/%s/NETMIT_XSKS", ifname);
	int map_fd = bpf_obj_get(pin);
	if (map_fd < 0)
		die("bpf_obj_get (is netmit attached?)", errno);
	err = xsk_socket__update_xskmap(xsk, map_fd);
	if (err)
		die("xsk_socket__update_xskmap", err);

	__u32 idx;
	if (xsk_ring_prod__reserve(&fq, RING_SIZE, &idx) != RING_SIZE)
		die("fill ring reserve", ENOSPC);
	for (__u32 i = 0; i < RING_SIZE; i++)
		*xsk_ring_prod__fill_addr(&fq, idx++) = (__u64)i * FRAME_SIZE;
	xsk_ring_prod__submit(&fq, RING_SIZE);

	int fd = xsk_socket__fd(xsk);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	unsigned long long packets = 0, bytes = 0;
	double start = now(), deadline = start + seconds;
	unsigned spins = 0;

	for (;;) {
		__u32 idx_rx = 0, idx_fq = 0;
		unsigned rcvd = xsk_ring_cons__peek(&rx, BATCH, &idx_rx);
		if (!rcvd) {
			if (xsk_ring_prod__needs_wakeup(&fq))
				recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
			if (use_poll)
				poll(&pfd, 1, 10);
			if ((++spins & 1023) == 0 && now() >= deadline)
				break;
			continue;
		}
		while (xsk_ring_prod__reserve(&fq, rcvd, &idx_fq) != rcvd) {
			if (xsk_ring_prod__needs_wakeup(&fq))
				recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
		}
		for (unsigned i = 0; i < rcvd; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&rx, idx_rx++);
			bytes += d->len;
			*xsk_ring_prod__fill_addr(&fq, idx_fq++) = xsk_umem__extract_addr(d->addr);
		}
		xsk_ring_prod__submit(&fq, rcvd);
		xsk_ring_cons__release(&rx, rcvd);
		packets += rcvd;
		if ((++spins & 1023) == 0 && now() >= deadline)
			break;
	}
	double elapsed = now() - start;

	struct xdp_statistics st = { 0 };
	socklen_t len = sizeof(st);
	getsockopt(fd, SOL_XDP, XDP_STATISTICS, &st, &len);
	bpf_map_delete_elem(map_fd, &queue);
	printf("{\"packets\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"pps\":%.1f,"
	       "\"rx_dropped\":%llu,\"rx_ring_full\":%llu,\"fill_empty\":%llu}\n",
	       packets, bytes, elapsed, packets / elapsed, (unsigned long long)st.rx_dropped,
	       (unsigned long long)st.rx_ring_full, (unsigned long long)st.rx_fill_ring_empty_descs);
	xsk_socket__delete(xsk);
	xsk_umem__delete(umem);
	free(area);
	return 0;
}
