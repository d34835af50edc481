package harness

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fwagent/fwagent/bench/gen"
)

// RunGen is `e2e gen TOOL FLAGS` (and `fwagent bench gen TOOL FLAGS`): one bench/gen tool as its own process, so
// the harness can run it inside a namespace, pinned to a core. One-shot
// tools print their result as JSON; servers print "ready" once bound and
// run until SIGTERM (the sink then prints its counts as JSON).
func RunGen(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("bench gen: want a tool: send, sink, echo, probe, tcpserve, connect")
	}
	tool, args := args[0], args[1:]
	fs := flag.NewFlagSet("gen "+tool, flag.ContinueOnError)
	addr := fs.String("addr", "", "address:port to bind or to send to")
	rate := fs.Float64("rate", 0, "packets (probes) per second; 0 is as fast as possible")
	dur := fs.Duration("duration", 5*time.Second, "run time")
	flows := fs.Int("flows", 64, "UDP flows (source ports)")
	payload := fs.Int("payload", 36, "UDP payload bytes (36: 64-byte IPv4 packets)")
	conc := fs.Int("concurrency", 8, "concurrent TCP connection attempts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		return fmt.Errorf("bench gen %s: -addr: %w", tool, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	out := json.NewEncoder(os.Stdout)
	switch tool {
	case "send":
		res, err := gen.Send(ctx, gen.SendConfig{Dst: ap, Flows: *flows, Payload: *payload, Rate: *rate, Duration: *dur})
		if err != nil {
			return err
		}
		return out.Encode(res)
	case "sink":
		s, err := gen.ListenSink(ap)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		if err := s.Run(ctx); err != nil {
			return err
		}
		return out.Encode(s.Stats())
	case "echo":
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return fmt.Errorf("bench gen echo: %w", err)
		}
		fmt.Println("ready")
		return gen.ServeEcho(ctx, c)
	case "probe":
		res, err := gen.Probe(ctx, gen.ProbeConfig{Dst: ap, Rate: *rate, Duration: *dur, Payload: *payload})
		if err != nil {
			return err
		}
		return out.Encode(res)
	case "tcpserve":
		ln, err := net.Listen("tcp", ap.String())
		if err != nil {
			return fmt.Errorf("bench gen tcpserve: %w", err)
		}
		fmt.Println("ready")
		return gen.ServeTCP(ctx, ln)
	case "connect":
		res, err := gen.ConnectRate(ctx, gen.ConnectConfig{Dst: ap, Concurrency: *conc, Duration: *dur})
		if err != nil {
			return err
		}
		return out.Encode(res)
	}
	return fmt.Errorf("bench gen: unknown tool %q", tool)
}
