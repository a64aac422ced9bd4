package daemon

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric descriptions. The four alert gauges are what users of DRBD ask to
// be paged for; the rest mirrors `tandem status`.
var (
	mSplitBrain   = prometheus.NewDesc("tandem_split_brain", "1 while a split brain is detected and unresolved (the replication link stays StandAlone).", nil, nil)
	mPeerOutdated = prometheus.NewDesc("tandem_peer_outdated", "1 while this node wrote without the peer after outdating or fencing it: the peer must resync before it may lead.", nil, nil)
	mSuspended    = prometheus.NewDesc("tandem_io_suspended", "1 while I/O is frozen waiting for the peer to be outdated or fenced.", nil, nil)
	mQuorumLost   = prometheus.NewDesc("tandem_quorum_lost", "1 while this node holds the group but may not accept writes (its lease ran out).", nil, nil)

	mPrimary    = prometheus.NewDesc("tandem_primary", "1 if the replicated disk is Primary here.", nil, nil)
	mGroupState = prometheus.NewDesc("tandem_group_state", "The node's group state (1 for the current one).", []string{"state"}, nil)
	mDiskState  = prometheus.NewDesc("tandem_disk_state", "The disk state of this node (local) and of the peer (peer), 1 for the current one.", []string{"node", "state"}, nil)
	mConnState  = prometheus.NewDesc("tandem_connection_state", "The replication connection state (1 for the current one).", []string{"state"}, nil)
	mPeerAlive  = prometheus.NewDesc("tandem_peer_alive", "1 while the peer is heard on some heartbeat medium.", nil, nil)
	mOutOfSync  = prometheus.NewDesc("tandem_out_of_sync_bytes", "Bytes marked out of sync with the peer.", nil, nil)
	mSyncLeft   = prometheus.NewDesc("tandem_resync_remaining_bytes", "Bytes a running resync has left (0 when none runs).", nil, nil)
	mResync     = prometheus.NewDesc("tandem_resync_bytes_total", "Bytes sent or received as resync data since start.", nil, nil)
	mFailovers  = prometheus.NewDesc("tandem_takeover_seconds", "How long the last takeover took from the peer's death to the group running.", nil, nil)

	mHeartbeats = prometheus.NewDesc("tandem_heartbeat_packets_total", "Heartbeat packets per medium, by what happened to them.", []string{"medium", "result"}, nil)
	mLate       = prometheus.NewDesc("tandem_heartbeats_late_total", "Heartbeats from the peer that came after warntime, per medium.", []string{"medium"}, nil)
	mLink       = prometheus.NewDesc("tandem_link_events_total", "Replication link counters.", []string{"counter"}, nil)
	mNBD        = prometheus.NewDesc("tandem_nbd_requests_total", "NBD requests by command.", []string{"command"}, nil)
	mNBDErrors  = prometheus.NewDesc("tandem_nbd_errors_total", "NBD replies that carried an error.", nil, nil)
	mNBDBytes   = prometheus.NewDesc("tandem_nbd_bytes_total", "NBD payload bytes of successful requests.", []string{"direction"}, nil)
)

// collector reads the node's state on the loop at each scrape.
type collector struct{ d *loop }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mSplitBrain, mPeerOutdated, mSuspended, mQuorumLost, mPrimary, mGroupState,
		mDiskState, mConnState, mPeerAlive, mOutOfSync, mSyncLeft, mResync, mFailovers, mHeartbeats, mLate, mLink,
		mNBD, mNBDErrors, mNBDBytes} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	var st *Status
	if !c.d.call(func() { st = c.d.status(false) }) {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(mQuorumLost, b2f(st.QuorumLost))
	gauge(mGroupState, 1, st.State)
	gauge(mPeerAlive, b2f(st.PeerAlive))
	if r := st.Replication; r != nil {
		gauge(mSplitBrain, b2f(r.SplitBrain))
		gauge(mPeerOutdated, b2f(r.PeerOutdated))
		gauge(mSuspended, b2f(r.Suspended))
		gauge(mPrimary, b2f(r.Role == "Primary"))
		gauge(mDiskState, 1, "local", r.Disk)
		gauge(mDiskState, 1, "peer", r.PeerDisk)
		gauge(mConnState, 1, r.Conn)
		gauge(mOutOfSync, float64(r.OutOfSyncKiB*1024))
		left := 0.0
		if r.Sync != nil {
			left = float64(r.Sync.LeftKiB * 1024)
		}
		gauge(mSyncLeft, left)
		counter(mResync, r.Stats.ResyncBlocks*4096)
	}
	if f := st.LastFailover; f != nil && !f.Detected.IsZero() && !f.Primary.IsZero() {
		gauge(mFailovers, f.Primary.Sub(f.Detected).Seconds())
	}
	for _, m := range st.Media {
		t := m.Transport
		for _, kv := range []struct {
			k string
			v uint64
		}{{"received", t.Received}, {"sent", t.Sent}, {"send_error", t.SendErrors}, {"superseded", t.Superseded},
			{"malformed", t.Malformed}, {"bad_auth", t.BadAuth}, {"replayed", t.Replayed}, {"oversized", t.Oversized},
			{"wrong_sender", t.WrongSender}, {"self", t.Self}, {"overrun", t.Overrun}} {
			counter(mHeartbeats, kv.v, m.Name, kv.k)
		}
		counter(mLate, m.Late, m.Name)
	}
	if l := st.Link; l != nil {
		for _, kv := range []struct {
			k string
			v uint64
		}{{"frames_in", l.FramesIn}, {"frames_out", l.FramesOut}, {"bytes_in", l.BytesIn}, {"bytes_out", l.BytesOut},
			{"bad_mac", l.BadMAC}, {"bad_crc", l.BadCRC}, {"malformed", l.Malformed}, {"oversized", l.Oversized},
			{"replayed", l.Replayed}, {"handshake_failed", l.HandshakeFailed}, {"refused", l.Refused}, {"dials", l.Dials},
			{"dial_failures", l.DialFailures}, {"established", l.Established}, {"reconnects", l.Reconnects},
			{"queue_full", l.QueueFull}} {
			counter(mLink, kv.v, kv.k)
		}
	}
	if n := st.NBD; n != nil {
		for _, kv := range []struct {
			k string
			v uint64
		}{{"read", n.Reads}, {"write", n.Writes}, {"flush", n.Flushes}, {"trim", n.Trims}, {"write_zeroes", n.WriteZeroes},
			{"disconnect", n.Disconnects}, {"unknown", n.Unknown}} {
			counter(mNBD, kv.v, kv.k)
		}
		counter(mNBDErrors, n.Errors)
		counter(mNBDBytes, n.BytesRead, "read")
		counter(mNBDBytes, n.BytesWritten, "written")
	}
}

// openMetrics serves Prometheus metrics on the configured address.
func (d *loop) openMetrics() error {
	addr := d.setup.MetricsAddress
	if addr == "" {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d}, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.New("metrics address " + addr + ": " + err.Error())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{d}}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.metrics = srv
	d.endpoints.Metrics = l.Addr().String()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

// slogPrinter adapts the daemon's logger to promhttp's error log.
type slogPrinter struct{ d *loop }

func (p slogPrinter) Println(v ...any) {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += " "
		}
		switch x := x.(type) {
		case error:
			s += x.Error()
		case string:
			s += x
		case int:
			s += strconv.Itoa(x)
		}
	}
	p.d.log.Warn("metrics: " + s)
}
