// The C reference for the end-to-end comparison (verdict/mmsg_e2e_test.go):
// libnetfilter_queue's canonical loop, one recv and one verdict per packet,
// accepting everything. Usage: nfq_accept_loop QUEUE. Prints READY once
// bound and the packet count when it gets SIGTERM.
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

static volatile sig_atomic_t stop;
static unsigned long packets;

static void on_term(int sig) { (void)sig; stop = 1; }

static int cb(struct nfq_q_handle *qh, struct nfgenmsg *m, struct nfq_data *d, void *arg) {
	(void)m; (void)arg;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(d);
	packets++;
	return nfq_set_verdict(qh, ntohl(ph->packet_id), NF_ACCEPT, 0, NULL);
}

int main(int argc, char **argv) {
	if (argc != 2) { fprintf(stderr, "usage: %s QUEUE\n", argv[0]); return 2; }
	struct sigaction sa = {0};
	sa.sa_handler = on_term; // no SA_RESTART: recv returns EINTR
	sigaction(SIGTERM, &sa, NULL);
	struct nfq_handle *h = nfq_open();
	if (!h) { perror("nfq_open"); return 1; }
	nfq_unbind_pf(h, AF_INET);
	nfq_bind_pf(h, AF_INET);
	struct nfq_q_handle *qh = nfq_create_queue(h, atoi(argv[1]), cb, NULL);
	if (!qh) { perror("nfq_create_queue"); return 1; }
	nfq_set_mode(qh, NFQNL_COPY_PACKET, 0xffff);
	nfq_set_queue_maxlen(qh, 4096);
	nfnl_rcvbufsiz(nfq_nfnlh(h), 16 << 20);
	int fd = nfq_fd(h);
	char buf[0x10000 + 1024] __attribute__((aligned));
	printf("READY\n");
	fflush(stdout);
	while (!stop) {
		int n = recv(fd, buf, sizeof buf, 0);
		if (n >= 0) { nfq_handle_packet(h, buf, n); continue; }
		if (errno == ENOBUFS || errno == EINTR) continue;
		perror("recv");
		break;
	}
	nfq_destroy_queue(qh);
	nfq_close(h);
	printf("PACKETS %lu\n", packets);
	return 0;
}
