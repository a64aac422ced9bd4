package faults

// splitmix is a tiny seeded Chooser for tests (the simulator has its own PRNG).
type splitmix struct{ s uint64 }

func (r *splitmix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (r *splitmix) Intn(n int) int {
	if n <= 0 {
		panic("Intn: n <= 0")
	}
	return int(r.next() % uint64(n))
}

func (r *splitmix) Float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// zeros answers 0 to everything: the point rapid shrinks towards.
type zeros struct{}

func (zeros) Intn(int) int     { return 0 }
func (zeros) Float64() float64 { return 0 }

var (
	names2 = []string{"server1", "server2"}
	names3 = []string{"server1", "server2", "witness"}
)
