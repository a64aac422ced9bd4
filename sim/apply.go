package sim

import (
	"time"

	"tandem/faults"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

var adminCommands = map[string]node.Admin{
	"standby": node.Standby, "online": node.Online, "takeover": node.Takeover, "cleanup": node.Cleanup,
}

var opCodes = map[string]node.Op{"start": node.Start, "stop": node.Stop, "monitor": node.Monitor}

// applyStep performs one scheduled fault.
func (s *Sim) applyStep(st faults.Step) {
	line := st.Format(s.opt.Names)
	valid := func(i int) bool { return i >= 0 && i < len(s.machines) }
	switch st.Kind {
	case faults.Crash:
		if !valid(st.Node) || !s.machines[st.Node].up {
			return
		}
		m := s.machines[st.Node]
		s.tracef("! %s", line)
		m.up, m.frozen, m.n = false, false, nil
		s.crashRepl(m)
		s.checks.crashed()
	case faults.Restart:
		if !valid(st.Node) || s.machines[st.Node].up {
			return
		}
		s.tracef("^ %s", line)
		s.boot(s.machines[st.Node])
	case faults.Freeze:
		if !valid(st.Node) || !s.machines[st.Node].up || s.machines[st.Node].frozen {
			return
		}
		s.tracef("~ %s", line)
		s.machines[st.Node].frozen = true
	case faults.Thaw:
		if !valid(st.Node) || !s.machines[st.Node].frozen {
			return
		}
		s.tracef("= %s", line)
		s.thaw(s.machines[st.Node])
	case faults.Partition:
		if !valid(st.Node) || !valid(st.Peer) {
			return
		}
		s.tracef("/ %s", line)
		s.netDown[st.Node][st.Peer] = true
		if !st.OneWay {
			s.netDown[st.Peer][st.Node] = true
		}
		if st.Node < 2 && st.Peer < 2 {
			s.breakConn("partition")
		}
	case faults.Heal:
		s.tracef("| %s", line)
		if st.Node < 0 || !valid(st.Node) || !valid(st.Peer) {
			s.netDown = [proto.MaxNodes][proto.MaxNodes]bool{}
			if s.repl != nil {
				s.maybeConnect()
			}
			return
		}
		s.netDown[st.Node][st.Peer] = false
		s.netDown[st.Peer][st.Node] = false
		if s.repl != nil {
			s.maybeConnect()
		}
	case faults.CutSerial:
		if s.opt.NoSerial {
			return
		}
		s.tracef("x %s", line)
		s.serial.Cut = true
	case faults.RestoreSerial:
		if s.opt.NoSerial {
			return
		}
		s.tracef("o %s", line)
		s.serial.Cut = false
	case faults.ClockDrift:
		if !valid(st.Node) {
			return
		}
		ppm := st.PPM
		if max := s.machines[st.Node].cfg.ClockDriftPPM; ppm > max || ppm < -max {
			// The nodes are promised drift within their configured bound;
			// drift beyond it is outside this simulator's fault model.
			if ppm > 0 {
				ppm = max
			} else {
				ppm = -max
			}
		}
		if s.machines[st.Node].clock.DriftPPM() == ppm {
			return
		}
		s.tracef("@ %s", line)
		s.machines[st.Node].clock.SetDrift(s.now, ppm)
	case faults.ClockJump:
		if !valid(st.Node) {
			return
		}
		s.tracef("@ %s (wall clock only: the core runs on monotonic time)", line)
		s.machines[st.Node].clock.JumpWall(st.Delta)
	case faults.FenceBreak:
		if !valid(st.Node) {
			return
		}
		s.tracef("# %s", line)
		mode := st.Mode
		if mode == "ok" {
			mode = ""
		}
		s.machines[st.Node].fenceMode = mode
	case faults.ResourceBreak:
		if !valid(st.Node) {
			return
		}
		op, ok := opCodes[st.Op]
		if !ok {
			return
		}
		s.tracef("# %s", line)
		s.machines[st.Node].breaks[[2]int{st.Resource, int(op)}] += st.Count
	case faults.Admin:
		cmd, ok := adminCommands[st.Command]
		if !valid(st.Node) || !ok {
			return
		}
		m := s.machines[st.Node]
		if !m.up {
			return
		}
		s.tracef("# %s", line)
		s.input(m, node.Input{Kind: node.AdminCommand, Admin: cmd})
	}
}

// thaw resumes a paused machine: it first reads what queued in its sockets,
// then notices how much time passed.
func (s *Sim) thaw(m *machine) {
	m.frozen = false
	buffered := m.buffered
	m.buffered = nil
	for _, in := range buffered {
		if !m.up || m.n == nil {
			return
		}
		s.step(m, in)
	}
	if m.up && m.n != nil {
		s.step(m, node.Input{Kind: node.Tick})
	}
	if s.repl != nil {
		s.maybeConnect()
	}
}

// startLiveness ends the safety phase: faults stop, everything is repaired,
// and an operator clears standby and failure counts, as one would after an
// incident. The cluster must then converge.
func (s *Sim) startLiveness() {
	s.liveness = true
	s.tracef("* safety phase over: faults stop, everything is repaired; the cluster must settle within %v", s.opt.Liveness)
	for _, st := range faults.Liveness(s.opt.Schedule, len(s.machines), s.now) {
		s.applyStep(st)
	}
	// Belt and braces: whatever the schedule says, the world is whole now.
	for _, m := range s.machines {
		if m.frozen {
			s.thaw(m)
		}
		if !m.up {
			s.tracef("^ %-8s restarts for the liveness phase", m.name)
			s.boot(m)
		}
		m.fenceMode = ""
		for k := range m.breaks {
			delete(m.breaks, k)
		}
		m.clock.SetDrift(s.now, 0)
	}
	s.netDown = [proto.MaxNodes][proto.MaxNodes]bool{}
	if s.repl != nil {
		for _, m := range s.machines[:2] {
			m.r.disk.SetFaults(DiskFaults{})
			if m.up && m.n != nil && m.n.Replica() != nil {
				if d := m.n.Replica().Disk(); d == repl.Failed || d == repl.Diskless {
					// The operator replaces the failed disk: a power cycle
					// attaches it again from its metadata.
					s.tracef("# %-8s operator: disk %v; power-cycles the node to attach it again", m.name, d)
					m.up, m.frozen, m.n = false, false, nil
					s.crashRepl(m)
					s.checks.crashed()
					s.boot(m)
				}
			}
		}
		s.maybeConnect()
		s.q.Push(s.now+2*time.Second, event{kind: evOperator})
	}
	s.serial.Cut = false
	s.rates = s.rates.ForLiveness()
	s.applyRates()
	for _, m := range s.machines[:2] {
		for _, cmd := range []node.Admin{node.Online, node.Cleanup} {
			s.step(m, node.Input{Kind: node.AdminCommand, Admin: cmd})
		}
	}
}
