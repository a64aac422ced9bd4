package disk

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/sys/unix"

	"tandem/internal/meta"
)

// readMetaArea reads the whole metadata area.
func (d *Disk) readMetaArea() ([]byte, error) {
	area := AlignedBuffer(int(d.layout.MetaBytes))
	n, err := d.meta.f.ReadAt(area, int64(d.layout.MetaOffset))
	if err == io.EOF && n < len(area) {
		err = fmt.Errorf("the device ends %d bytes into the %d-byte area: %w", n, len(area), io.ErrUnexpectedEOF)
	} else if err == io.EOF {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("read metadata %s at offset %d: %w", d.meta.path, d.layout.MetaOffset, err)
	}
	return area, nil
}

// LoadMeta reads the metadata area and decodes it (meta.Layout.DecodeReport:
// the newer intact header slot wins; untrustworthy bitmap pages count as all
// out of sync). What it found is logged and kept for MetaReport. The record
// it returns is also what the next PersistMeta writes its delta against.
//
// Errors wrap meta.ErrNoMetadata (never created: run tandem create-md),
// meta.ErrCorrupt, meta.ErrVersion or meta.ErrGeometry (created with other
// ALSlots or Blocks, or for internal/external the other way round), or an
// I/O error.
func (d *Disk) LoadMeta() (*meta.Record, error) {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	area, err := d.readMetaArea()
	if err != nil {
		return nil, err
	}
	rec, rep, err := d.layout.DecodeReport(area)
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, meta.ErrNoMetadata):
			hint = " (run tandem create-md first, or give the size and activity-log slots it was created with)"
		case errors.Is(err, meta.ErrGeometry):
			hint = " (the size, activity-log slots or internal/external placement differ from create-md's)"
		}
		return nil, fmt.Errorf("metadata %s at offset %d: %w%s", d.meta.path, d.layout.MetaOffset, err, hint)
	}
	d.report = rep
	d.prev = rec.Clone()
	d.durable, d.known = rec.Seq, true
	attrs := []any{"path", d.meta.path, "slot", string(rune('A' + rep.Slot)), "seq", rec.Seq,
		"gen", rec.Gen.String(), "flags", rec.Flags.String(), "out_of_sync_blocks", rec.Bitmap.Count()}
	if rep.Other != nil {
		attrs = append(attrs, "other_slot", rep.Other.Error())
	}
	if rep.AL != nil || rep.BadPages > 0 || rep.NewerPages > 0 {
		attrs = append(attrs, "activity_log", fmt.Sprint(rep.AL), "bad_pages", rep.BadPages, "newer_pages", rep.NewerPages)
		d.log.Warn("metadata loaded; parts could not be trusted and count as out of sync", attrs...)
	} else {
		d.log.Info("metadata loaded", attrs...)
	}
	return rec, nil
}

// MetaReport is what the last successful LoadMeta found: which header slot
// it used, why not the other, and what it could not read back.
func (d *Disk) MetaReport() meta.Report {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	return d.report
}

// PersistMeta writes rec (the core's Persist output) crash-safely, as the
// metadata format requires: every write but the header, fdatasync, the
// header, fdatasync. When it returns nil rec is durable.
//
// Normally only the bitmap pages that changed since the last durable record
// are written; full writes every page, and so does the first persist after
// a failed one (its pages may be half written). rec.Seq must be past the
// last durable (or loaded) record's Seq, which it is when rec comes from the
// core: a lower one would be shadowed by the newer header on disk and lost,
// so it is refused (wrapping meta.ErrRecord). PersistMeta does not keep rec.
func (d *Disk) PersistMeta(rec *meta.Record, full bool) error {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if d.readOnly {
		return fmt.Errorf("persist metadata %s: %w", d.meta.path, unix.EROFS)
	}
	if rec != nil && d.known && rec.Seq <= d.durable {
		return fmt.Errorf("persist metadata %s: %w: Seq %d is not past the durable Seq %d and would be shadowed by it",
			d.meta.path, meta.ErrRecord, rec.Seq, d.durable)
	}
	var writes []meta.Write
	var err error
	if full || d.prev == nil || rec == nil || rec.Seq != d.prev.Seq+1 {
		writes, err = d.layout.Encode(rec)
	} else {
		writes, err = d.layout.EncodeDelta(d.prev, rec)
	}
	if err != nil {
		return fmt.Errorf("persist metadata %s: %w", d.meta.path, err)
	}
	if err := d.writeMeta(writes); err != nil {
		// What reached the disk is unknown: the next persist rewrites every
		// page (the format's rule after a failed persist).
		d.prev = nil
		return fmt.Errorf("persist metadata %s (Seq %d): %w", d.meta.path, rec.Seq, err)
	}
	d.keep(rec)
	return nil
}

// keep records rec as the last durable record, reusing the previous copy's
// bitmap: on a large disk a fresh clone per activity-log transaction would
// allocate tens of MiB each time.
func (d *Disk) keep(rec *meta.Record) {
	d.durable, d.known = rec.Seq, true
	if d.prev == nil || d.prev.Bitmap.Len() != rec.Bitmap.Len() {
		d.prev = rec.Clone()
		return
	}
	bm := d.prev.Bitmap
	*d.prev = *rec // Encode cleared rec's note of suspect pages
	d.prev.AL = slices.Clone(rec.AL)
	bm.CopyFrom(rec.Bitmap)
	d.prev.Bitmap = bm
}

// writeMeta issues a persist's writes: all but the last, flush, the last
// (the header, which commits the rest), flush.
func (d *Disk) writeMeta(writes []meta.Write) error {
	last := len(writes) - 1
	for i, w := range writes {
		if i == last {
			if err := d.meta.fdatasync(); err != nil {
				return fmt.Errorf("flush before the header: %w", err)
			}
		}
		if err := d.writeMetaAt(w.Data, w.Offset); err != nil {
			return err
		}
	}
	if err := d.meta.fdatasync(); err != nil {
		return fmt.Errorf("flush after the header: %w", err)
	}
	return nil
}

// writeMetaAt writes p at offset off of the metadata area, through an
// aligned copy when the metadata device is open with O_DIRECT (the format
// keeps offsets and sizes multiples of 4096).
func (d *Disk) writeMetaAt(p []byte, off uint64) error {
	if d.meta.direct && !aligned(p) {
		if cap(d.scratch) < len(p) {
			d.scratch = AlignedBuffer(max(len(p), 64<<10))
		}
		q := d.scratch[:len(p)]
		copy(q, p)
		p = q
	}
	if _, err := d.meta.f.WriteAt(p, int64(d.layout.MetaOffset+off)); err != nil {
		return fmt.Errorf("write %d bytes at metadata offset %d: %w", len(p), off, unwrapPath(err))
	}
	return nil
}
