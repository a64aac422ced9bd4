package vm

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// An archive is the in-memory list of an initramfs's entries, written out in
// the "newc" cpio format the kernel unpacks (cpio -H newc). Writing it here
// rather than with cpio(1) lets the builder add device nodes without root
// and makes the image a pure function of its entries.
type archive struct {
	entries map[string]*entry
}

type entry struct {
	mode   uint32 // type bits | permissions
	data   []byte // file contents, or a symlink's target
	rmajor uint32 // device nodes
	rminor uint32
}

// File type bits of a cpio mode.
const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeLink = 0o120000
	modeChar = 0o020000
)

func newArchive() *archive { return &archive{entries: map[string]*entry{}} }

// clean turns a path into the archive's form: relative, no leading slash.
func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// mkdirs adds p's parents as directories.
func (a *archive) mkdirs(p string) {
	for d := path.Dir(clean(p)); d != "." && d != ""; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = &entry{mode: modeDir | 0o755}
		}
	}
}

func (a *archive) dir(p string, perm uint32) {
	a.mkdirs(p)
	a.entries[clean(p)] = &entry{mode: modeDir | perm}
}

func (a *archive) file(p string, data []byte, perm uint32) {
	a.mkdirs(p)
	a.entries[clean(p)] = &entry{mode: modeFile | perm, data: data}
}

func (a *archive) symlink(p, target string) {
	a.mkdirs(p)
	a.entries[clean(p)] = &entry{mode: modeLink | 0o777, data: []byte(target)}
}

func (a *archive) chardev(p string, perm, major, minor uint32) {
	a.mkdirs(p)
	a.entries[clean(p)] = &entry{mode: modeChar | perm, rmajor: major, rminor: minor}
}

func (a *archive) has(p string) bool { _, ok := a.entries[clean(p)]; return ok }

// writeTo writes the archive in newc format, parents before children, with
// fixed inode numbers and times so equal entries give equal bytes.
func (a *archive) writeTo(w io.Writer) error {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names) // a parent sorts before its children
	ino := uint32(1)
	for _, n := range names {
		e := a.entries[n]
		nlink := uint32(1)
		if e.mode&0o170000 == modeDir {
			nlink = 2
		}
		if err := writeRecord(w, n, ino, e.mode, nlink, e.rmajor, e.rminor, e.data); err != nil {
			return err
		}
		ino++
	}
	return writeRecord(w, "TRAILER!!!", 0, 0, 1, 0, 0, nil)
}

func writeRecord(w io.Writer, name string, ino, mode, nlink, rmajor, rminor uint32, data []byte) error {
	// magic, then 13 8-digit hex fields: ino mode uid gid nlink mtime
	// filesize devmajor devminor rdevmajor rdevminor namesize check.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(make([]byte, (4-len(data)%4)%4))
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
