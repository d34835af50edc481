package metrics

import (
	"os"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fwagent/fwagent/internal/conntrack"
	"github.com/fwagent/fwagent/internal/droplog"
	"github.com/fwagent/fwagent/internal/nf"
	"github.com/fwagent/fwagent/internal/pipeline"
	"github.com/fwagent/fwagent/internal/procqueue"
	"github.com/fwagent/fwagent/verdict"
	"github.com/fwagent/fwagent/verdict/nfqmsg"
)

// Engine is what the collector reads from the queue side (*verdict.Engine).
type Engine interface {
	Stats() verdict.Stats
	BatchStats() nfqmsg.CounterSnapshot
	CopyRange() uint32
}

// Sources are the counters a Collector reads at scrape time. Nil sources
// are left out of the scrape.
type Sources struct {
	Pipeline *pipeline.Shared
	Engine   Engine
	DropLog  interface{ Stats() droplog.Stats }
	Flows    interface{ Stats() conntrack.Stats }
	Reloads  *Reloads
	// Queues are the queue numbers the agent binds; their kernel counters
	// are read from ProcQueuePath.
	Queues []uint16
	// FailOpen says the queues pass packets they cannot deliver; only then
	// is the fail-open estimate reported.
	FailOpen bool
	// ProcQueuePath defaults to procqueue.Path.
	ProcQueuePath string
	// KernelHits, when set, reads the hits of the rules the kernel decides
	// (--kernel-rules auto) by rule name, "default" for the hooks'
	// defaults; they are added to the agent's own counts, so
	// fwagent_rule_hits_total covers both paths. Called at scrape time.
	KernelHits func() (map[string]uint64, error)
}

// Collector is a prometheus.Collector over the agent's own counters.
type Collector struct {
	src Sources

	// failOpen keeps the fail-open estimate monotonic across scrapes.
	mu       sync.Mutex
	failOpen uint64
}

// NewCollector makes a collector over src.
func NewCollector(src Sources) *Collector {
	if src.ProcQueuePath == "" {
		src.ProcQueuePath = procqueue.Path
	}
	return &Collector{src: src}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("fwagent_"+name, help, labels, nil)
}

var (
	descPackets      = desc("packets_total", "Packets decided by the agent, by hook and verdict: accept, drop, reject, or would_drop and would_reject for audit decisions (accepted, counted apart).", "hook", "verdict")
	descBytes        = desc("packet_bytes_total", "Bytes of the packets decided by the agent.")
	descDecodeErrors = desc("decode_errors_total", "Packets that could not be decoded and got the policy's on_error verdict.")
	descLooped       = desc("looped_packets_total", "Packets that came back still carrying an action mark and were accepted.")
	descCached       = desc("cached_decisions_total", "Decisions reused from the flow table's cache.")
	descRuleHits     = desc("rule_hits_total", "Packets decided by each rule of the policy in force (counts carry over reloads by rule name; offloaded packets never reach the agent).", "rule")
	descDefaultHits  = desc("default_hits_total", "Packets decided by a hook's default verdict.")
	descLatency      = desc("decision_latency_seconds", "Time to decode, track and decide one packet, for a sample of one packet in 256.")
	descQUICFlows    = desc("quic_reassembly_flows", "UDP flows whose QUIC Initial packets are followed for tls_sni (pending or decided).")
	descQUICBytes    = desc("quic_reassembly_bytes", "Memory held by the QUIC Initial reassembly, counted against its cap.")
	descQUICRefused  = desc("quic_reassembly_refused_total", "QUIC flows not followed, or given up on, because the reassembly was at its cap (their tls_sni rules do not match).")

	descStreams       = desc("l7_streams", "TCP stream directions held for L7 rules (ClientHello, DNS over TCP, HTTP reassembly).")
	descStreamBytes   = desc("l7_stream_bytes", "Memory the L7 stream reassembly holds, in bytes.")
	descStreamLimit   = desc("l7_stream_bytes_limit", "Cap on fwagent_l7_stream_bytes.")
	descStreamFull    = desc("l7_stream_full_total", "Streams not kept because the reassembly was at its cap; their packets were read one by one.")
	descStreamFailed  = desc("l7_stream_failed_total", "Streams given up (a hello, DNS message or HTTP head beyond its bound, or malformed): their L7 rules no longer match.")
	descStreamPending = desc("l7_pending_accepts_total", "Packets accepted while their L7 rule waited for the rest of a hello, DNS message or HTTP request head.")

	descQueues       = desc("queues", "Queues the agent is configured to bind.")
	descReaders      = desc("queue_readers", "Queue readers running; fewer than fwagent_queues means a reader died.")
	descENOBUFS      = desc("queue_enobufs_total", "Socket overruns reported by the kernel on the queue sockets (the kernel handled those packets per fail-open/closed).")
	descSendErrors   = desc("verdict_send_errors_total", "Verdicts that could not be sent.")
	descReadErrors   = desc("queue_read_errors_total", "Failed reads on the queue sockets.")
	descReads        = desc("queue_reads_total", "Batched reads (recvmmsg calls that returned packets).")
	descTruncated    = desc("queue_truncated_total", "Queued packets whose message did not fit the read buffer.")
	descSockEnded    = desc("rejected_sockets_ended_total", "Local sockets ended (sock_diag) after a reject of their connection mid-stream on the input hook.")
	descSockEndFail  = desc("rejected_sockets_end_failed_total", "Local sockets of connections rejected mid-stream that could not be ended (already gone, or too many at once).")
	descKernelErrors = desc("queue_kernel_errors_total", "Error replies from the kernel to verdict messages.")
	descGSO          = desc("queue_gso_packets_total", "Queued packets that were GSO/GRO aggregates of several segments (NFQA_SKB_GSO).")
	descCsumPartial  = desc("queue_csum_partial_total", "Queued packets whose transport checksum was not yet filled in (NFQA_SKB_CSUMNOTREADY).")
	descRequeued     = desc("queue_requeued_total", "Queued packets sent round the chain again because they were copied under a smaller copy range than the policy now needs.")
	descCopyRange    = desc("queue_copy_range_bytes", "Bytes of each queued packet the kernel copies to the agent (the policy's need, or --copy-range).")

	descKQueued   = desc("queue_kernel_packets_total", "Packets the kernel sent to the queue since it was bound (id_sequence).", "queue")
	descKWaiting  = desc("queue_kernel_waiting", "Packets queued and not yet answered.", "queue")
	descKDropped  = desc("queue_kernel_dropped_total", "Packets the kernel dropped on the queue: queue_full (queue_dropped) or socket (user_dropped, the reader's socket was full). With fail-open both pass instead and are not counted here.", "queue", "reason")
	descKBound    = desc("queue_kernel_bound", "1 if the kernel lists the queue as bound.", "queue")
	descFailOpen  = desc("failopen_packets_total", "Estimate of packets the kernel passed without a verdict because the reader's socket was full (fail-open): queued minus answered minus waiting. Packets passed because the queue itself was full are counted by no one.")
	descFlows     = desc("flows", "Flows tracked now.")
	descFlowIns   = desc("flow_inserts_total", "Flows created.")
	descFlowEvict = desc("flow_evictions_total", "Live flows evicted to make room at --max-flows.")
	descFlowExp   = desc("flow_expired_total", "Flows removed after their timeout.")
	descFlowInv   = desc("flow_invalid_total", "Packets the flow tracker found invalid.")

	descLogReceived = desc("droplog_received_total", "Log messages read from the NFLOG group.")
	descLogWritten  = desc("droplog_events_total", "Drop-log events written to the sinks.")
	descLogShed     = desc("droplog_shed_total", "Drop-log events shed because the sinks fell behind.")
	descLogLimited  = desc("droplog_rate_limited_total", "Drop-log events dropped by the event rate cap.")
	descLogErrors   = desc("droplog_errors_total", "Undecodable log payloads, sink failures and socket overruns.")
	descLogLost     = desc("droplog_lost_total", "Log messages the kernel could not deliver (sequence gaps).")
	descLogOverruns = desc("droplog_overruns_total", "Times the drop-log socket buffer overflowed (ENOBUFS); the messages lost are in droplog_lost_total.")

	descGeneration = desc("policy_generation", "Generation of the policy in force (carried in offload connmarks).")
	descRules      = desc("policy_rules", "Rules in the policy in force.")
	descReloads    = desc("policy_reloads_total", "Policy reloads by result (ok, error).", "result")
	descReloadTime = desc("policy_last_reload_timestamp_seconds", "Unix time of the last reload attempt (0: none yet).")
	descReloadOK   = desc("policy_last_reload_success", "1 if the last reload attempt succeeded or none was made, 0 if it failed (the previous policy stays in force).")
	descReloadErr  = desc("policy_last_reload_error_info", "Present while the last reload failed; the error label is its message.", "error")
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descPackets, descBytes, descDecodeErrors, descLooped, descCached, descRuleHits, descDefaultHits, descLatency,
		descQUICFlows, descQUICBytes, descQUICRefused,
		descStreams, descStreamBytes, descStreamLimit, descStreamFull, descStreamFailed, descStreamPending,
		descSockEnded, descSockEndFail,
		descQueues, descReaders, descENOBUFS, descSendErrors, descReadErrors, descReads, descTruncated, descKernelErrors,
		descGSO, descCsumPartial, descRequeued, descCopyRange,
		descKQueued, descKWaiting, descKDropped, descKBound, descFailOpen,
		descFlows, descFlowIns, descFlowEvict, descFlowExp, descFlowInv,
		descLogReceived, descLogWritten, descLogShed, descLogLimited, descLogErrors, descLogLost, descLogOverruns,
		descGeneration, descRules, descReloads, descReloadTime, descReloadOK, descReloadErr,
	} {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// Collect reads every source once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	answered := c.collectPipeline(ch)
	c.collectEngine(ch)
	if len(c.src.Queues) > 0 {
		c.collectKernelQueues(ch, answered)
	}
	c.collectFlows(ch)
	c.collectDropLog(ch)
	c.collectReloads(ch)
}

// collectPipeline reports the packet path: packets, L7 state, rule hits
// (with the compiled kernel rules' share) and latency. It returns the
// packets answered, for the kernel queue counters.
func (c *Collector) collectPipeline(ch chan<- prometheus.Metric) (answered uint64) {
	s := c.src.Pipeline
	if s == nil {
		return 0
	}
	st := s.Stats()
	for h := range st.Packets {
		for o := range st.Packets[h] {
			counter(ch, descPackets, st.Packets[h][o], nf.Hook(h).String(), pipeline.Outcome(o).String())
		}
	}
	counter(ch, descBytes, st.Bytes)
	counter(ch, descDecodeErrors, st.DecodeErrors)
	counter(ch, descLooped, st.Looped)
	counter(ch, descCached, st.Cached)
	q := s.QUICStats()
	gauge(ch, descQUICFlows, float64(q.Flows))
	gauge(ch, descQUICBytes, float64(q.Bytes))
	counter(ch, descQUICRefused, q.Refused)
	ss := s.StreamStats()
	gauge(ch, descStreams, float64(ss.Streams))
	gauge(ch, descStreamBytes, float64(ss.Bytes))
	gauge(ch, descStreamLimit, float64(ss.Limit))
	counter(ch, descStreamFull, ss.Full)
	counter(ch, descStreamFailed, ss.Failed)
	counter(ch, descStreamPending, ss.Pending)

	pol := s.Policy()
	byRule, defaults := pol.Hits()
	var kernel map[string]uint64
	if c.src.KernelHits != nil {
		// A failed read leaves the kernel's share out of this scrape
		// rather than failing it; the table health check reports why.
		kernel, _ = c.src.KernelHits()
	}
	for i, n := range byRule {
		name := pol.Program.RuleName(int32(i))
		counter(ch, descRuleHits, n+kernel[name], name)
	}
	counter(ch, descDefaultHits, defaults+kernel["default"])
	gauge(ch, descGeneration, float64(pol.Gen))
	gauge(ch, descRules, float64(pol.Program.NumRules()))

	l := s.Latency()
	buckets := make(map[float64]uint64, len(l.Bounds))
	var cum uint64
	for i, b := range l.Bounds {
		cum += l.Counts[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descLatency, l.Count(), l.Sum.Seconds(), buckets)
	return st.Total()
}

// collectEngine reports the queue readers and what they read.
func (c *Collector) collectEngine(ch chan<- prometheus.Metric) {
	e := c.src.Engine
	if e == nil {
		return
	}
	st, b := e.Stats(), e.BatchStats()
	gauge(ch, descQueues, float64(len(c.src.Queues)))
	gauge(ch, descReaders, float64(st.ReadersLive))
	counter(ch, descENOBUFS, st.ENOBUFS)
	counter(ch, descSendErrors, st.SendErrors)
	counter(ch, descReadErrors, st.ReadErrors)
	counter(ch, descReads, b.Reads)
	counter(ch, descTruncated, b.Truncated)
	counter(ch, descKernelErrors, b.KernelErrors)
	counter(ch, descSockEnded, st.SocketsEnded)
	counter(ch, descSockEndFail, st.SocketEndFailed)
	counter(ch, descGSO, b.GSO)
	counter(ch, descCsumPartial, b.CsumPartial)
	counter(ch, descRequeued, b.Requeued)
	gauge(ch, descCopyRange, float64(e.CopyRange()))
}

// collectFlows reports the flow table.
func (c *Collector) collectFlows(ch chan<- prometheus.Metric) {
	f := c.src.Flows
	if f == nil {
		return
	}
	st := f.Stats()
	gauge(ch, descFlows, float64(st.Flows))
	counter(ch, descFlowIns, st.Inserts)
	counter(ch, descFlowEvict, st.Evictions)
	counter(ch, descFlowExp, st.Expired)
	counter(ch, descFlowInv, st.Invalid)
}

// collectDropLog reports the drop log.
func (c *Collector) collectDropLog(ch chan<- prometheus.Metric) {
	d := c.src.DropLog
	if d == nil {
		return
	}
	st := d.Stats()
	counter(ch, descLogReceived, st.Received)
	counter(ch, descLogWritten, st.Written)
	counter(ch, descLogShed, st.Shed)
	counter(ch, descLogLimited, st.RateLimited)
	counter(ch, descLogErrors, st.Errors)
	counter(ch, descLogLost, st.Lost)
	counter(ch, descLogOverruns, st.Overruns)
}

// collectReloads reports the policy reloads and how the last one went.
func (c *Collector) collectReloads(ch chan<- prometheus.Metric) {
	r := c.src.Reloads
	if r == nil {
		return
	}
	st := r.Stats()
	counter(ch, descReloads, st.OK, "ok")
	counter(ch, descReloads, st.Failed, "error")
	var ts float64
	if !st.Last.IsZero() {
		ts = float64(st.Last.UnixNano()) / 1e9
	}
	gauge(ch, descReloadTime, ts)
	ok := 1.0
	if st.LastErr != nil {
		ok = 0
		gauge(ch, descReloadErr, 1, st.LastErr.Error())
	}
	gauge(ch, descReloadOK, ok)
}

// collectKernelQueues reports the kernel's counters for our queues. A queue
// the kernel does not list is unbound: it is reported as such, with no
// counters.
func (c *Collector) collectKernelQueues(ch chan<- prometheus.Metric, answered uint64) {
	var byNum map[uint16]procqueue.Queue
	if f, err := os.Open(c.src.ProcQueuePath); err == nil {
		qs, perr := procqueue.Parse(f)
		f.Close()
		if perr == nil {
			byNum = make(map[uint16]procqueue.Queue, len(qs))
			for _, q := range qs {
				byNum[q.Queue] = q
			}
		}
	}
	if byNum == nil {
		return // no procfs here (or unreadable): say nothing rather than zeros
	}
	var queued, waiting, userDropped uint64
	for _, num := range c.src.Queues {
		label := strconv.Itoa(int(num))
		q, ok := byNum[num]
		if !ok {
			gauge(ch, descKBound, 0, label)
			continue
		}
		gauge(ch, descKBound, 1, label)
		counter(ch, descKQueued, q.IDSequence, label)
		gauge(ch, descKWaiting, float64(q.Waiting), label)
		counter(ch, descKDropped, q.QueueDropped, label, "queue_full")
		counter(ch, descKDropped, q.UserDropped, label, "socket")
		queued += q.IDSequence
		waiting += q.Waiting
		userDropped += q.UserDropped
	}
	if !c.src.FailOpen || c.src.Pipeline == nil {
		return
	}
	// The snapshots are not taken at one instant, so the estimate can dip;
	// a counter must not, so it only ever rises.
	var est uint64
	if seen := answered + waiting + userDropped; queued > seen {
		est = queued - seen
	}
	c.mu.Lock()
	c.failOpen = max(c.failOpen, est)
	est = c.failOpen
	c.mu.Unlock()
	counter(ch, descFailOpen, est)
}
