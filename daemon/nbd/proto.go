package nbd

// Wire constants of the NBD protocol, numbered as in the specification
// (NetworkBlockDevice/nbd, doc/proto.md). Every integer on the wire is big
// endian.

// Handshake magics.
const (
	magicInit   uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicReply  uint64 = 0x3e889045565a9    // option replies
)

// Handshake flags (server) and client flags.
const (
	handshakeFixedNewstyle uint16 = 1 << 0
	handshakeNoZeroes      uint16 = 1 << 1

	clientFixedNewstyle uint32 = 1 << 0
	clientNoZeroes      uint32 = 1 << 1
	clientKnown                = clientFixedNewstyle | clientNoZeroes
)

// Options a client may send during the handshake.
const (
	optExportName       uint32 = 1
	optAbort            uint32 = 2
	optList             uint32 = 3
	optStartTLS         uint32 = 5
	optInfo             uint32 = 6
	optGo               uint32 = 7
	optStructuredReply  uint32 = 8
	optListMetaContext  uint32 = 9
	optSetMetaContext   uint32 = 10
	optExtendedHeaders  uint32 = 11
	repErrBit           uint32 = 1 << 31
	repAck              uint32 = 1
	repServer           uint32 = 2
	repInfo             uint32 = 3
	repErrUnsup                = repErrBit | 1
	repErrPolicy               = repErrBit | 2
	repErrInvalid              = repErrBit | 3
	repErrUnknown              = repErrBit | 6
	repErrShutdown             = repErrBit | 7
	repErrTooBig               = repErrBit | 9
	infoExport          uint16 = 0
	infoName            uint16 = 1
	infoDescription     uint16 = 2
	infoBlockSize       uint16 = 3
	exportPaddingLength        = 124 // zero bytes after NBD_OPT_EXPORT_NAME's reply
)

// Transmission phase: request and simple-reply framing.
const (
	magicRequest     uint32 = 0x25609513
	magicSimpleReply uint32 = 0x67446698

	requestHeaderLength = 28 // magic 4, flags 2, type 2, cookie 8, offset 8, length 4
	replyHeaderLength   = 16 // magic 4, error 4, cookie 8
)

// Commands (request types).
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdCache       uint16 = 5
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7
)

// Command flags.
const (
	cmdFlagFUA      uint16 = 1 << 0
	cmdFlagNoHole   uint16 = 1 << 1
	cmdFlagDF       uint16 = 1 << 2
	cmdFlagReqOne   uint16 = 1 << 3
	cmdFlagFastZero uint16 = 1 << 4
)

// Error values of a reply. They happen to equal Linux errno numbers, but the
// protocol defines them, not the host.
const (
	errPerm     uint32 = 1
	errIO       uint32 = 5
	errNoMem    uint32 = 12
	errInval    uint32 = 22
	errNoSpc    uint32 = 28
	errOverflow uint32 = 75
	errNotSup   uint32 = 95
	errShutdown uint32 = 108
)

// Flags are the 16 transmission flags an export advertises: the kernel takes
// them from AttachKernel, a userspace client from the handshake.
type Flags uint16

// Transmission flags (NBD_FLAG_*).
const (
	FlagHasFlags        Flags = 1 << 0 // always set
	FlagReadOnly        Flags = 1 << 1 // every write, trim and write-zeroes fails with EPERM
	FlagSendFlush       Flags = 1 << 2 // NBD_CMD_FLUSH is accepted
	FlagSendFUA         Flags = 1 << 3 // NBD_CMD_FLAG_FUA is honoured
	FlagRotational      Flags = 1 << 4 // a hint for the client's I/O scheduler
	FlagSendTrim        Flags = 1 << 5 // NBD_CMD_TRIM is accepted
	FlagSendWriteZeroes Flags = 1 << 6 // NBD_CMD_WRITE_ZEROES (and NO_HOLE) is accepted
	FlagCanMultiConn    Flags = 1 << 8 // a flush on one connection covers writes acknowledged on all
)
