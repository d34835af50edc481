package harness

import "github.com/fwagent/fwagent/bench/gen"

// UDPPoint is one open-loop UDP run through one configuration.
type UDPPoint struct {
	// Label says why the run exists: "max", "80%" and "50%" of the
	// configuration's measured capacity, or "fixed" for the common grid.
	Label     string  `json:"label"`
	TargetPPS float64 `json:"target_pps"` // 0 for max
	// OfferedPPS is what the sender actually sent per second.
	OfferedPPS   float64 `json:"offered_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	Sent         uint64  `json:"sent"`
	Received     uint64  `json:"received"`
	LossPct      float64 `json:"loss_pct"`
	SenderErrors uint64  `json:"sender_errors"`
	// SenderSkipped is what a paced sender skipped after losing its core
	// for more than a millisecond (see gen.SendResult.Skipped).
	SenderSkipped uint64 `json:"sender_skipped"`
	// HandlerCPUSec is the handler process's user+sys seconds during the
	// run; HandlerCPUPerMpkt divides it by delivered packets / 1e6.
	HandlerCPUSec     float64 `json:"handler_cpu_s"`
	HandlerCPUPerMpkt float64 `json:"handler_cpu_s_per_mpkt"`
	// CPU1PerMpkt is all busy time of the firewall core (handler, sink,
	// softirq, anything else) per million delivered packets.
	CPU1BusySec float64 `json:"cpu1_busy_s"`
	CPU1PerMpkt float64 `json:"cpu1_s_per_mpkt"`
	// SenderSoftirqNsPerPkt is the sender core's softirq time per packet
	// sent: veth runs the receiver's input path, netfilter included, there.
	// A table's cost shows in it undisturbed by whatever else takes the
	// core, which moves the packet rates.
	SenderSoftirqNsPerPkt float64 `json:"sender_softirq_ns_per_pkt"`
	// SenderNetfilterPct is, with -perf and at max only, the share of the
	// sender core's busy samples spent in netfilter (see perf.go).
	SenderNetfilterPct *float64 `json:"sender_netfilter_pct,omitempty"`
	// Queue is what the kernel dropped at the queue; SinkDrops what the
	// sink's own socket buffer dropped. Together they explain the loss.
	Queue     queueCounters `json:"queue"`
	SinkDrops uint64        `json:"sink_rcvbuf_errors"`
	// BacklogDrops is the host's input-backlog drops during the run
	// (/proc/net/softnet_stat, all CPUs, not only this namespace's).
	BacklogDrops uint64 `json:"backlog_drops"`
	Flows        int    `json:"flows"`
	// Attempts is how many times a paced run was made (see pacedRun).
	Attempts int              `json:"attempts,omitempty"`
	Latency  *gen.ProbeResult `json:"latency,omitempty"`
}

// ConnectPoint is one TCP connection-setup run.
type ConnectPoint struct {
	gen.ConnectResult
	HandlerCPUSec float64 `json:"handler_cpu_s"`
	// Queue is what went through the queues and what they dropped.
	Queue queueCounters `json:"queue"`
}

// BulkPoint is one TCP bulk stream (iperf3).
type BulkPoint struct {
	Gbps          float64 `json:"gbps"`
	Retransmits   int64   `json:"retransmits"`
	HandlerCPUSec float64 `json:"handler_cpu_s"`
	// Queued is how many packets went through the queues: with offload,
	// a handful per connection.
	Queued uint64 `json:"queued"`
	// Attempts is which of the runs (best of two) this is.
	Attempts int `json:"attempt"`
}

// DropLogPoint is one drop-log run: every offered packet is dropped with
// logging, and the reader writes one JSON line per event.
type DropLogPoint struct {
	Offered      uint64  `json:"offered"`
	OfferedPPS   float64 `json:"offered_pps"`
	SenderErrors uint64  `json:"sender_errors"`
	// Written is the lines in the reader's file 1 s after the sender
	// stopped; EventsPerSec divides it by the sender's run time.
	Written      uint64  `json:"written"`
	EventsPerSec float64 `json:"events_per_sec"`
	// WrittenAtExit is the lines in the file once the reader has stopped
	// and flushed everything it had taken in.
	WrittenAtExit uint64 `json:"written_at_exit"`
	// Counters the reader reported itself, when it reports them (fwagent
	// on exit; ulogd2 has none).
	Reported map[string]uint64 `json:"reported,omitempty"`
	// Queue is what the kernel dropped before the reader's verdict path
	// (fwagent only).
	Queue queueCounters `json:"queue"`
	// Unaccounted is offered minus everything accounted for: written,
	// shed and lost as the reader reports them, and queue drops. A reader
	// that counts every event it sheds leaves this at zero.
	Unaccounted   int64   `json:"unaccounted"`
	HandlerCPUSec float64 `json:"handler_cpu_s"`
}

// ConfigResult is everything measured for one configuration.
type ConfigResult struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Skipped     string        `json:"skipped,omitempty"`
	Errors      []string      `json:"errors,omitempty"`
	UDP         []UDPPoint    `json:"udp,omitempty"`
	Connect     *ConnectPoint `json:"tcp_connect,omitempty"`
	Bulk        *BulkPoint    `json:"tcp_bulk,omitempty"`
	DropLog     *DropLogPoint `json:"drop_log,omitempty"`
	// HandlerLog is the handler's last stderr lines (its exit counters).
	HandlerLog []string `json:"handler_log,omitempty"`
}

// point returns the UDP run with the label, or nil.
func (c *ConfigResult) point(label string) *UDPPoint {
	for i := range c.UDP {
		if c.UDP[i].Label == label {
			return &c.UDP[i]
		}
	}
	return nil
}

// Machine describes where the run happened.
type Machine struct {
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Go     string `json:"go"`
	Date   string `json:"date"`
}

// Results is the whole run, written as results.json.
type Results struct {
	Machine  Machine        `json:"machine"`
	Method   Method         `json:"method"`
	Configs  []ConfigResult `json:"configs"`
	Bars     []Bar          `json:"bars"`
	Commands []string       `json:"commands"`
}

// Method is the run's parameters.
type Method struct {
	DurationSec float64 `json:"duration_s"`
	Flows       int     `json:"flows"`
	Payload     int     `json:"udp_payload"`
	ProbeRate   float64 `json:"probe_rate"`
	Queues      int     `json:"queues_n"`
	Workers     int     `json:"workers"`
	SenderCPU   int     `json:"sender_cpu"`
	FirewallCPU int     `json:"firewall_cpu"`
	Nice        int     `json:"nice"`
	RTProbe     bool    `json:"rt_probe"`
	Perf        bool    `json:"perf,omitempty"`
}

// Bar is one acceptance criterion from the issue, evaluated.
type Bar struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	// Met is "yes", "no" or "n/a" (a configuration it needs did not run).
	Met string `json:"met"`
}
