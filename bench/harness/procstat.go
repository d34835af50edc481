package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/fwagent/fwagent/internal/procqueue"
)

// clockTicks is USER_HZ, the unit of /proc times; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// parseProcStatCPU returns utime+stime in seconds from the contents of
// /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc/PID/stat: no ')' in %q", b)
	}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc/PID/stat: %d fields after the name, want at least 13", len(f))
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc/PID/stat utime: %w", err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: /proc/PID/stat stime: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// parseCPUBusy returns the busy seconds (everything but idle and iowait) of
// the line "cpuN" in the contents of /proc/stat.
func parseCPUBusy(b []byte, cpu int) (float64, error) {
	// user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already counted in user.
	return sumCPUFields(b, cpu, func(j int) bool { return j != 3 && j != 4 && j != 8 && j != 9 })
}

// parseCPUSoftirq returns the softirq seconds of the line "cpuN": on the
// sender's core, the veth receive path the kernel runs for each packet
// sent, netfilter included.
func parseCPUSoftirq(b []byte, cpu int) (float64, error) {
	return sumCPUFields(b, cpu, func(j int) bool { return j == 6 })
}

// sumCPUFields sums the fields j (0: user) of the line "cpuN" for which
// take holds, in seconds.
func sumCPUFields(b []byte, cpu int, take func(j int) bool) (float64, error) {
	want := "cpu" + strconv.Itoa(cpu)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] != want {
			continue
		}
		var sum uint64
		for j, s := range f[1:] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: /proc/stat %s field %d: %w", want, j+1, err)
			}
			if take(j) {
				sum += v
			}
		}
		return float64(sum) / clockTicks, nil
	}
	return 0, fmt.Errorf("bench: /proc/stat: no line %s", want)
}

// queueCounters are the kernel's per-queue loss counters, summed over the
// queues of /proc/net/netfilter/nfnetlink_queue.
type queueCounters struct {
	// QueueDropped counts packets dropped because the queue was full.
	QueueDropped uint64 `json:"queue_dropped"`
	// UserDropped counts packets the kernel could not put on the netlink
	// socket (its receive buffer was full).
	UserDropped uint64 `json:"user_dropped"`
	// Queued counts packets handed to the queues (the growth of each
	// queue's last packet id): how much of the traffic the handler saw,
	// which is how an offloaded flow shows.
	Queued uint64 `json:"queued"`
	// Waiting is the packets still in the queues awaiting a verdict when
	// the counters were read (a level, not a count: sub keeps the later).
	Waiting uint64 `json:"waiting"`
}

func (a queueCounters) sub(b queueCounters) queueCounters {
	return queueCounters{a.QueueDropped - b.QueueDropped, a.UserDropped - b.UserDropped, a.Queued - b.Queued, a.Waiting}
}

// parseNfqueue sums the counters of every queue bound in
// /proc/net/netfilter/nfnetlink_queue.
func parseNfqueue(b []byte) (queueCounters, error) {
	var c queueCounters
	qs, err := procqueue.Parse(bytes.NewReader(b))
	if err != nil {
		return c, fmt.Errorf("bench: %w", err)
	}
	for _, q := range qs {
		c.QueueDropped += q.QueueDropped
		c.UserDropped += q.UserDropped
		c.Queued += q.IDSequence
		c.Waiting += q.Waiting
	}
	return c, nil
}

// parseSoftnetDropped sums the "dropped" column (the second, in hex) of
// /proc/net/softnet_stat over all CPUs: packets the kernel dropped because a
// CPU's input backlog was full. It is host-wide, not per namespace.
func parseSoftnetDropped(b []byte) (uint64, error) {
	var sum uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return 0, fmt.Errorf("bench: softnet_stat: short line %q", sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 16, 32)
		if err != nil {
			return 0, fmt.Errorf("bench: softnet_stat dropped: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// parseUDPRcvbufErrors reads the Udp RcvbufErrors counter (datagrams a full
// socket buffer dropped) from the contents of /proc/net/snmp, whose Udp
// section is a header line and a value line.
func parseUDPRcvbufErrors(b []byte) (uint64, error) {
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name == "RcvbufErrors" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("bench: /proc/net/snmp RcvbufErrors: %w", err)
				}
				return v, nil
			}
		}
		break
	}
	return 0, fmt.Errorf("bench: /proc/net/snmp: no Udp RcvbufErrors")
}

// countLines counts newline-terminated lines, the events of a JSON-lines
// log.
func countLines(b []byte) uint64 { return uint64(bytes.Count(b, []byte{'\n'})) }

// parseKV finds key=value (a decimal) in a logfmt line, as fwagent's and
// the C loop's exit lines print their counters.
func parseKV(line, key string) (uint64, bool) {
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.Trim(v, `"`), 10, 64)
		if err != nil {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
