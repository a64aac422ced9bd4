package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"tandem/daemon/disk"
	"tandem/internal/proto"
)

// runMD is `tandem create-md` and `tandem dump-md` (verb is which): the
// metadata verbs of drbdadm, on a backing device or file.
func runMD(verb string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("disk", "", "the backing block device or file (required)")
	metaPath := fs.String("meta", "", "external metadata file or device; empty: internal, at the end of the disk")
	blocks := fs.Uint64("blocks", 0, "data area in 4 KiB blocks; 0: the whole disk (less internal metadata). Must match the resource's size")
	slots := fs.Int("al-slots", disk.DefaultALSlots, "activity-log slots (al-extents); must match the resource's")
	node := fs.Uint("node", 0, "create-md: id of the node owning this disk, 0 or 1")
	force := fs.Bool("force", false, "create-md: write over existing metadata or a filesystem signature")
	fs.Usage = func() {
		switch verb {
		case "create-md":
			fmt.Fprint(stderr, "usage: tandem create-md --disk PATH [--meta PATH] [--node ID] [--force]\n\n"+
				"Writes fresh replication metadata: no generation, Inconsistent, nothing out of sync.\n"+
				"The first `primary --force` on one node starts the first generation; the peer then gets a full sync.\n"+
				"Refuses a disk that holds metadata, a filesystem or a partition table unless --force.\n\n")
		default:
			fmt.Fprint(stderr, "usage: tandem dump-md --disk PATH [--meta PATH]\n\n"+
				"Prints the replication metadata: generations, flags, out-of-sync blocks, activity log.\n"+
				"Refused while a daemon holds the disk.\n\n")
		}
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tandem %s: --disk PATH is required and nothing else may follow the flags\n", verb)
		fs.Usage()
		return 2
	}
	if *node > 1 {
		fmt.Fprintf(stderr, "tandem %s: --node %d: only the data nodes 0 and 1 have disks\n", verb, *node)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	switch verb {
	case "create-md":
		err = disk.CreateMD(*path, disk.CreateOptions{MetaPath: *metaPath, ALSlots: *slots, Node: proto.NodeID(*node),
			Force: *force, Blocks: *blocks, Logger: log})
		if err == nil {
			fmt.Fprintf(stdout, "tandem create-md: fresh metadata written to %s (node %d)\n", *path, *node)
		}
	default:
		var d *disk.Disk
		d, err = disk.Open(*path, disk.Options{MetaPath: *metaPath, ALSlots: *slots, Blocks: *blocks, Direct: true, ReadOnly: true, Logger: log})
		if err == nil {
			err = errors.Join(d.Dump(stdout), d.Close())
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem %s: %v\n", verb, err)
		return 1
	}
	return 0
}
