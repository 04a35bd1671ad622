/*
 * proto/ -- the OML Measurement Stream Protocol (OMSP v1-v5) as pure
 * functions: header lines, experiment names, schema declarations, the text
 * and binary tuple decoders, and the encoder used by the server's
 * self-reporting and by the test and benchmark clients.  Nothing here does
 * I/O; section numbers refer to PROTOCOL.md.
 */
#ifndef PROTO_H
#define PROTO_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Types (§3.3).  The order is part of no wire format. */
enum oml_type {
	OML_INT32,
	OML_UINT32,
	OML_INT64,
	OML_UINT64,
	OML_DOUBLE,
	OML_STRING,
	OML_BLOB,
	OML_GUID,
	OML_BOOL,
	OML_VINT32,
	OML_VUINT32,
	OML_VINT64,
	OML_VUINT64,
	OML_VDOUBLE,
	OML_VBOOL,
	OML_TYPE_MAX
};

/*
 * oml_type_parse() takes every name of §3.3 (legacy aliases included) and
 * returns 0, or -1 for anything else ("int", "[string]", "[blob]" and
 * "[guid]" are refused, as by the original).
 */
const char	*oml_type_name(enum oml_type);	/* canonical, for table_* rows */
int		 oml_type_parse(const char *, size_t, enum oml_type *);
int		 oml_type_is_vector(enum oml_type);

/*
 * A decoded or to-be-encoded value.
 *  - Scalars use the matching union member (guid uses u64, bool uses b).
 *  - string and blob use s (not NUL-terminated; may point into the
 *    caller's input buffer).  null is set for a blob whose base64 was
 *    invalid (§5.2); the decoders never set it otherwise.
 *  - Vectors: the DECODERS yield them already rendered in the storage
 *    text form of §8.4 ("[ 1, -2, 300 ]", "" when empty) in s; the
 *    ENCODER takes them as native arrays in vec (int32_t, uint32_t,
 *    int64_t, uint64_t, double, or uint8_t 0/1 for bool).
 * Double NaN and guid 0 are passed through as values; each storage
 * backend decides how to store them.
 */
struct oml_value {
	enum oml_type	type;
	int		null;
	union {
		int32_t		i32;
		uint32_t	u32;
		int64_t		i64;
		uint64_t	u64;
		double		d;
		int		b;
		struct {
			const char	*p;
			size_t		 len;
		} s;
		struct {
			const void	*p;
			uint32_t	 n;
		} vec;
	} u;
};

/* Header lines (§2.1) */

/*
 * The next '\n'-terminated line in buf[0..len).  Returns its length
 * without the terminator and without one trailing '\r', and sets *used to
 * the bytes it occupies including the '\n'; returns -1 if no complete
 * line is buffered.
 */
long	 line_next(const char *buf, size_t len, size_t *used);

/*
 * Split a header line at its first ':'.  The key is verbatim; the value
 * starts after any spaces and tabs and has trailing white space (space,
 * \t, \r, \v, \f) removed.  Returns -1 if there is no ':'.
 */
int	 header_split(const char *line, size_t len, const char **key,
	    size_t *klen, const char **val, size_t *vlen);

/* 1-63 bytes of [A-Za-z0-9_.:+-], the first one of [A-Za-z0-9_] (stricter
 * than §10.5).  Returns 1 if valid; 0 with *why saying which rule failed. */
#define EXPNAME_MAX	63
int	 expname_valid(const char *, size_t, const char **why);

/* §3.2: [A-Za-z_][A-Za-z0-9_]*; returns 1 if valid, else 0. */
int	 oml_name_valid(const char *, size_t);

/*
 * Incremental experiment-id sniffer for the master: feed it the bytes read
 * so far (from the connection's first byte).  Returns SNIFF_MORE until a
 * complete "domain:" or "experiment-id:" line is seen (SNIFF_FOUND, name
 * in name[]), or the header can no longer name one (SNIFF_BAD, *why).
 * Limits on total bytes and time are the caller's.  Zero the struct
 * before the first call.  Only '\n'-terminated lines are examined (one
 * trailing '\r' is dropped); SNIFF_BAD comes from a blank line before the
 * experiment id, a line without ':' or an invalid name (*why).  Once it
 * has said SNIFF_FOUND it says so again, whatever it is fed: the lines
 * after the experiment id are the experiment process's to read.
 */
enum sniff_result { SNIFF_MORE, SNIFF_FOUND, SNIFF_BAD };
struct sniff {
	size_t	scanned;		/* bytes of complete lines examined */
	int	found;			/* name[] is the answer */
	char	name[EXPNAME_MAX + 1];
};
enum sniff_result sniff_expid(struct sniff *, const char *buf, size_t len,
	    const char **why);

/* Schemas (§3) */
struct oml_field {
	char		*name;
	enum oml_type	 type;
};

struct oml_schema {
	long		  index;
	char		 *name;
	int		  nfields;
	struct oml_field *fields;
};

#define SCHEMA_MAX_INDEX	65535

/* The metadata stream (§8.7): its table, and its schema as stream 0. */
#define OML_META_TABLE	"_experiment_metadata"
#define OML_META_SCHEMA	"0 " OML_META_TABLE " subject:string key:string " \
			"value:string"

/*
 * Parse "index name f:t f:t ..." (§3.1) with white-space runs as
 * separators.  Rejects: no or non-integer index, index outside
 * 0..SCHEMA_MAX_INDEX, invalid names, unknown types, zero fields, more than
 * maxfields fields, duplicate field names and field names that collide with
 * the built-in columns (oml_tuple_id, oml_sender_id, oml_seq, oml_ts_client,
 * oml_ts_server).  maxfields <= 0 means no limit.  On error returns -1,
 * writes a reason into err and leaves the schema empty (nothing to free);
 * the reason starts with SCHEMA_ERR_FIELDS when only the limit was hit.
 *
 * schema_same() compares names and fields, not the index (§8.8);
 * schema_fields_same() only the fields (names and types, in order).
 * schema_copy() fills an uninitialised dst.  schema_free() frees the
 * contents (not the struct) and zeroes it.  schema_field() returns the
 * field's position or -1.  enc_schema_text() appends the canonical
 * declaration without a "schema: " prefix or a newline.
 */
#define SCHEMA_ERR_FIELDS	"more than "
int	 schema_parse(const char *, size_t, int maxfields,
	    struct oml_schema *, char *err, size_t errlen);
char	*schema_format(const struct oml_schema *);	/* canonical, malloc'd */
int	 schema_same(const struct oml_schema *, const struct oml_schema *);
int	 schema_fields_same(const struct oml_schema *,
	    const struct oml_schema *);
void	 schema_copy(struct oml_schema *dst, const struct oml_schema *src);
void	 schema_rename(struct oml_schema *, const char *);
void	 schema_free(struct oml_schema *);
int	 schema_field(const struct oml_schema *, const char *name);

/* Text data (§5) */
struct text_line {
	int	 n;		/* number of TAB-separated fields */
	int	 cap;
	char	**f;		/* field starts (inside the caller's line) */
	size_t	*len;		/* field lengths */
};

void	 text_line_free(struct text_line *);	/* start zeroed; reuse it */

/*
 * Split a data line (without '\n'; the caller strips one '\r') on every
 * TAB, keeping empty fields.  The line must be writable: values are later
 * decoded in place.  Then parse the three leading fields like atof, atol
 * and atol truncated to int.  Returns -1 if there are fewer than 3 fields.
 */
int	 text_split(char *line, size_t len, struct text_line *,
	    double *ts, long *stream, int32_t *seq);

/*
 * Convert the value fields (f[3..n-1]) against the column types (§5.2 -
 * §5.4).  Strings are backslash-decoded and blobs base64-decoded in place;
 * vectors are rendered into scratch (which is reset first).  Returns 0, or
 * -1 with a reason in *why when the row must be dropped; the caller checks
 * the field count first.  A row whose values would take more than maxout
 * bytes once stored (strings, blobs and rendered vectors; 0: no limit) is
 * refused with *why OML_TOO_LONG, rendering no more than one vector past
 * the limit: a vector's text may be 7 times its binary form.
 */
#define OML_TOO_LONG	"longer than the limit once stored"
int	 text_values(struct text_line *, const enum oml_type *types, int n,
	    struct oml_value *out, struct buf *scratch, size_t maxout,
	    const char **why);

/* Binary data (§6) */
enum bin_status {
	BIN_NEED,	/* incomplete: wait for more bytes; *used is 0 */
	BIN_SKIP,	/* *used bytes of garbage precede the next sync */
	BIN_PACKET,	/* a complete packet of *used bytes, in *pkt */
	BIN_BAD,	/* a complete but malformed packet of *used bytes */
	BIN_TOOBIG	/* its length field exceeds maxpkt */
};

struct bin_packet {
	int		 stream;
	int		 count;
	int32_t		 seq;
	double		 ts;
	const uint8_t	*values;	/* the typed values, after the ts */
	size_t		 vlen;
};

/*
 * Frame the next packet in buf[0..len) (§6.5, recommended variant: the
 * length field delimits the packet).  An unknown packet type skips the
 * two sync bytes; garbage without a sync is skipped except for a trailing
 * 0xAA that may start one; in a run of 0xAA the last two are the sync.
 * BIN_BAD covers a zero count, a seq-no or timestamp of the wrong type
 * and a body too short for them (*why); *used is then the whole packet.
 * BIN_TOOBIG sets *used to 2 (the sync), so skipping it resynchronises;
 * §10.8 suggests closing the connection instead.  Every status but
 * BIN_NEED and BIN_PACKET sets *why.
 */
enum bin_status bin_next(const uint8_t *buf, size_t len, size_t maxpkt,
	    struct bin_packet *pkt, size_t *used, const char **why);

/*
 * The whole length (header included) of the packet that buf starts with,
 * once its header is buffered; 0 before that, or if buf does not start
 * with a packet header.  For the caller's memory and progress accounting:
 * bin_next() alone decides what is a packet.
 */
size_t	 bin_need(const uint8_t *buf, size_t len);

/*
 * Decode pkt's values against the column types.  The values must match in
 * number (count), in type (LONG_T is accepted for int32) and must consume
 * the packet exactly.  Returns 0, or -1 with *why; maxout as for
 * text_values().
 */
int	 bin_values(const struct bin_packet *, const enum oml_type *types,
	    int n, struct oml_value *out, struct buf *scratch, size_t maxout,
	    const char **why);

double	 bin_double_decode(int32_t mant, int8_t exp);

/*
 * The PROXY protocol preamble (HAProxy's send-proxy and send-proxy-v2:
 * version 1 text, version 2 binary) at the start of buf[0..len), before
 * the client's own bytes.  Returns the preamble's length once it is
 * complete; PROXY_MORE while the bytes could still become one; PROXY_BAD
 * (*why) when they are a malformed one or a v2 block longer than max;
 * PROXY_ABSENT (*why) when they cannot be one.  pi->local is set for a
 * proxy's own connection (v2 LOCAL, a health check) and for addresses the
 * preamble does not give (v1 UNKNOWN, v2 UNSPEC or UNIX): the socket's
 * own addresses then stand.  Otherwise src is the client and dst the
 * address it connected to, ports set.  TLVs are skipped.
 */
enum { PROXY_ABSENT = -2, PROXY_BAD = -1, PROXY_MORE = 0 };
struct proxy_info {
	int			 local;
	struct sockaddr_storage	 src;
	struct sockaddr_storage	 dst;
};
int	 proxy_parse(const void *buf, size_t len, size_t max,
	    struct proxy_info *, const char **why);

/* Encoder (used by self-reporting and the test clients) */
struct enc_header {
	int			  protocol;	/* 1..5 */
	const char		 *domain;
	long			  start_time;
	const char		 *sender;	/* may be NULL */
	const char		 *app;		/* may be NULL */
	const struct oml_schema	 *schemas;
	int			  nschemas;
	int			  binary;
};

void	 enc_header(struct buf *, const struct enc_header *);
void	 enc_schema_text(struct buf *, const struct oml_schema *);

/*
 * Append one tuple.  Text: "ts\tstream\tseq\tv1..." with strings escaped
 * (§5.3), blobs in base64, bools T/F, doubles %.17g.  Binary: a short
 * packet, or a long one when it would exceed 65535 bytes or force_long is
 * set; doubles as DOUBLE_T (§6.3), vector doubles as DOUBLE64_T, strings
 * cut to 255 bytes.  A string or blob with null set goes out empty.
 * Text doubles are printed so that strtod reads back the same value:
 * short when six decimals are exact, else %.17g.  n must be 1..255 and
 * stream 0..255 in binary.  enc_bin_double() reproduces liboml2 byte for
 * byte, including its infinity artefact (02 80 00 00 00 00, read back as
 * -2.0) for both signs.
 */
void	 enc_text_row(struct buf *, int stream, int32_t seq, double ts,
	    const struct oml_value *, int n);
void	 enc_bin_row(struct buf *, int stream, int32_t seq, double ts,
	    const struct oml_value *, int n, int force_long);
void	 enc_bin_double(uint8_t out[6], double);

/*
 * base64 (standard alphabet, '=' padding).  b64_encode writes
 * 4 * ((len + 2) / 3) bytes and no NUL.  The decoder returns the decoded
 * length, or -1 for a length not a multiple of 4, a byte outside the
 * alphabet or misplaced padding (unused low bits are not checked).
 */
size_t	 b64_encode(char *out, const void *in, size_t len);
long	 b64_decode_inplace(char *s, size_t len);	/* -1 if invalid */

#endif /* PROTO_H */
