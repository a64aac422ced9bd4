package scenarios

import "time"

// StepLine prints one step as the scenario language writes it, with the
// cluster's node names: "at 10s crash server1". Runners use it in traces,
// timelines and error messages.
func (s *Scenario) StepLine(st Step) string {
	prefix := "at " + formatDuration(st.At)
	if st.For > 0 {
		prefix += " for " + formatDuration(st.For)
	}
	return prefix + " " + formatStep(&st, &s.Cluster)
}

// ExpectLine prints one expectation as the scenario language writes it,
// e.g. "expect primary server2 within 10s".
func (s *Scenario) ExpectLine(e *Expect) string {
	prefix := "expect "
	switch e.When {
	case AtTime:
		prefix += "at " + formatDuration(e.T) + " "
	case AtEnd:
		prefix += "at end "
	}
	return prefix + formatCond(e, s.Cluster.Nodes)
}

// FormatDuration prints a duration as the language writes it ("4.1s",
// "200ms").
func FormatDuration(d time.Duration) string { return formatDuration(d) }
