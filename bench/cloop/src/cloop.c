// cloop: the C reference for bench/e2e. A libnetfilter_queue accept loop,
// one verdict per packet, as the library's own example does it, with a large
// socket buffer and ENOBUFS ignored so that overload shows as loss in the
// kernel's counters, not as an exit.
//
// Build: gcc -O2 -o cloop cloop.c -lnetfilter_queue -lnfnetlink
// Run:   cloop QUEUE [MAXLEN]     (prints "ready" once the queue is bound)
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnfnetlink/libnfnetlink.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static volatile sig_atomic_t stop;
static unsigned long long verdicts, verdict_errors, enobufs;

static void on_signal(int sig) { (void)sig; stop = 1; }

static int cb(struct nfq_q_handle *qh, struct nfgenmsg *nfmsg, struct nfq_data *nfa, void *data) {
	(void)nfmsg; (void)data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	uint32_t id = ph ? ntohl(ph->packet_id) : 0;
	verdicts++;
	if (nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL) < 0)
		verdict_errors++;
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s QUEUE [MAXLEN]\n", argv[0]);
		return 2;
	}
	int queue = atoi(argv[1]);
	uint32_t maxlen = argc > 2 ? (uint32_t)atoi(argv[2]) : 4096;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal; // no SA_RESTART: recv returns EINTR on a signal
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct nfq_handle *h = nfq_open();
	if (!h) { perror("cloop: nfq_open"); return 1; }
	struct nfq_q_handle *qh = nfq_create_queue(h, queue, &cb, NULL);
	if (!qh) { perror("cloop: nfq_create_queue"); return 1; }
	if (nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff) < 0) { perror("cloop: nfq_set_mode"); return 1; }
	if (nfq_set_queue_maxlen(qh, maxlen) < 0) { perror("cloop: nfq_set_queue_maxlen"); return 1; }
	int fd = nfq_fd(h);
	nfnl_rcvbufsiz(nfq_nfnlh(h), 16 << 20);
	int one = 1;
	setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
	printf("ready\n");
	fflush(stdout);

	char buf[65536 + 4096] __attribute__((aligned));
	while (!stop) {
		int rv = recv(fd, buf, sizeof buf, 0);
		if (rv >= 0) {
			nfq_handle_packet(h, buf, rv);
			continue;
		}
		if (errno == ENOBUFS) { enobufs++; continue; }
		if (errno == EINTR) continue;
		perror("cloop: recv");
		break;
	}
	fprintf(stderr, "cloop: verdicts=%llu verdict_errors=%llu enobufs=%llu\n", verdicts, verdict_errors, enobufs);
	nfq_destroy_queue(qh);
	nfq_close(h);
	return 0;
}
