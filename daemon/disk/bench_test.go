package disk

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkSeqWriteSync: 4 KiB sequential writes with an fdatasync after
// every 64, through Disk and through a plain os.File on the same filesystem
// in the same run. Batches alternate between the two so that both see the
// same machine; disk/raw is the cost of going through Disk (with O_DIRECT:
// of bypassing the page cache, which is the point of it). With parallel,
// each batch's 64 Disk writes are issued at once from 64 goroutines, as the
// daemon issues the core's independent DiskIO outputs.
func BenchmarkSeqWriteSync(b *testing.B) {
	const batch = 64
	for _, mode := range []struct{ direct, parallel bool }{{false, false}, {true, false}, {true, true}} {
		b.Run(fmt.Sprintf("direct=%t/parallel=%t", mode.direct, mode.parallel), func(b *testing.B) {
			direct := mode.direct
			dir := b.TempDir()
			rawFile, err := os.CreateTemp(dir, "raw-*.img")
			if err != nil {
				b.Fatal(err)
			}
			defer rawFile.Close()
			diskFile, err := os.CreateTemp(dir, "disk-*.img")
			if err != nil {
				b.Fatal(err)
			}
			// Allocated up front, as a backing file should be: writes into
			// holes would measure ext4's block allocation instead.
			for _, f := range []*os.File{rawFile, diskFile} {
				if err := unix.Fallocate(int(f.Fd()), 0, 0, testBytes); err != nil {
					b.Fatal(err)
				}
			}
			diskFile.Close()
			d, err := Open(diskFile.Name(), Options{Direct: direct})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			buf := GetBuf(1)
			pattern(buf, 0, 1)
			blocks := d.Blocks() / batch * batch
			var rawTime, diskTime time.Duration
			b.SetBytes(2 * BlockSize) // one write to each
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				first := uint64(i) % blocks
				start := time.Now()
				for j := range n {
					if _, err := rawFile.WriteAt(buf, int64((first+uint64(j))*BlockSize)); err != nil {
						b.Fatal(err)
					}
				}
				if err := unix.Fdatasync(int(rawFile.Fd())); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if mode.parallel {
					var wg sync.WaitGroup
					errs := make([]error, n)
					for j := range n {
						wg.Go(func() { errs[j] = d.WriteAt(buf, first+uint64(j), false) })
					}
					wg.Wait()
					if err := errors.Join(errs...); err != nil {
						b.Fatal(err)
					}
				} else {
					for j := range n {
						if err := d.WriteAt(buf, first+uint64(j), false); err != nil {
							b.Fatal(err)
						}
					}
				}
				if err := d.Flush(); err != nil {
					b.Fatal(err)
				}
				rawTime += mid.Sub(start)
				diskTime += time.Since(mid)
			}
			b.StopTimer()
			b.ReportMetric(float64(rawTime.Nanoseconds())/float64(b.N), "raw-ns/write")
			b.ReportMetric(float64(diskTime.Nanoseconds())/float64(b.N), "disk-ns/write")
			b.ReportMetric(float64(diskTime)/float64(rawTime), "disk/raw")
		})
	}
}
