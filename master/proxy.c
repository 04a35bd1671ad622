/*
 * The PROXY protocol in the master.  --proxy-from names the load balancers
 * (HAProxy with send-proxy or send-proxy-v2) whose connections begin with
 * a PROXY preamble naming the real client: the master reads it before the
 * header, within --header-limit and --header-timeout, strips it, and from
 * then on the client's address is the connection's peer, in the log, the
 * reports and the per-address limits, and travels with the socket to the
 * experiment's process.  Nothing of the preamble but the client's address
 * and port is used (its TLVs are skipped by the parser).
 *
 * The preamble is required from those addresses, as the specification
 * asks of a receiver (it must not guess whether one is there), and refused
 * from everyone else, the clients behind a proxy included: an address not
 * named could otherwise pass itself off as any other.  A proxy's own
 * connection (v2 LOCAL or UNSPEC, v1 UNKNOWN or naming the connection
 * itself: HAProxy's health checks) keeps the proxy's address, and is only
 * counted as a client once it sends a byte of header; one that closes
 * before sending anything at all (HAProxy's plain TCP check) closes
 * without a word, as any connection that never spoke.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master/master.h"

#define SIG_SEEN	6	/* bytes that tell a preamble from a header */

/* An entry of --proxy-from, IPv4 ones as IPv4-mapped IPv6. */
struct net {
	uint8_t		 addr[16];
	unsigned	 bits;
};

static struct net	*nets;
static size_t		 nnets;

static const uint8_t	 mapped[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* Do a and b agree in their first bits bits? */
static int
prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned	 n = bits / 8, r = bits % 8;
	uint8_t		 m;

	if (memcmp(a, b, n) != 0)
		return 0;
	if (r == 0)
		return 1;
	m = (uint8_t)(0xff << (8 - r));
	return (a[n] & m) == (b[n] & m);
}

/*
 * "ADDR", "ADDR/PREFIX", "[V6]" or "[V6]/PREFIX", numeric only: the
 * master never resolves a name.  Bits set past the prefix are refused,
 * as the sign of a typing error.
 */
int
proxy_from_add(const char *spec, const char **why)
{
	char		 a[64], *slash;
	struct net	 n;
	struct in_addr	 v4;
	unsigned long	 bits;
	size_t		 len;
	int		 v6;
	uint8_t		 zero[16] = { 0 };

	if (strlcpy(a, spec, sizeof(a)) >= sizeof(a)) {
		*why = "not an address";
		return -1;
	}
	if ((slash = strchr(a, '/')) != NULL)
		*slash++ = '\0';
	len = strlen(a);
	if (len > 2 && a[0] == '[' && a[len - 1] == ']') {
		a[len - 1] = '\0';
		memmove(a, a + 1, len - 1);
		if (inet_pton(AF_INET6, a, n.addr) != 1) {
			*why = "not an IPv6 address";
			return -1;
		}
		v6 = 1;
	} else if (inet_pton(AF_INET, a, &v4) == 1) {
		memcpy(n.addr, mapped, sizeof(mapped));
		memcpy(n.addr + 12, &v4, 4);
		v6 = 0;
	} else if (inet_pton(AF_INET6, a, n.addr) == 1)
		v6 = 1;
	else {
		*why = "not a numeric IPv4 or IPv6 address";
		return -1;
	}
	bits = v6 ? 128 : 32;
	if (slash != NULL && parse_uint(slash, v6 ? 128 : 32, &bits) == -1) {
		*why = v6 ? "the prefix is not a number from 0 to 128" :
		    "the prefix is not a number from 0 to 32";
		return -1;
	}
	n.bits = (unsigned)bits + (v6 ? 0 : 96);
	/* The address past its prefix must be all zero. */
	memcpy(zero, n.addr, n.bits / 8);
	if (n.bits % 8)
		zero[n.bits / 8] = n.addr[n.bits / 8] &
		    (uint8_t)(0xff << (8 - n.bits % 8));
	if (memcmp(zero, n.addr, 16) != 0) {
		*why = "the address has bits set past its prefix";
		return -1;
	}
	nets = xreallocarray(nets, nnets + 1, sizeof(*nets));
	nets[nnets++] = n;
	return 0;
}

/* sa's address as IPv6 (IPv4 as IPv4-mapped) and its port; -1 if neither. */
static int
canon(const struct sockaddr *sa, uint8_t a[16], uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		memcpy(a, mapped, sizeof(mapped));
		memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		*port = ((const struct sockaddr_in *)sa)->sin_port;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		*port = ((const struct sockaddr_in6 *)sa)->sin6_port;
	} else
		return -1;
	return 0;
}

/* Is the peer sa one of --proxy-from? */
int
proxy_trusted(const struct sockaddr *sa)
{
	uint8_t		 a[16];
	uint16_t	 port;
	size_t		 i;

	if (canon(sa, a, &port) == -1)
		return 0;
	for (i = 0; i < nnets; i++)
		if (prefix_eq(a, nets[i].addr, nets[i].bits))
			return 1;
	return 0;
}

/* A connection of no --proxy-from address: a preamble is an impostor. */
static int
untrusted(struct pending *p, const char **why)
{
	struct proxy_info	 pi;
	int			 r;

	r = proxy_parse(p->data.p, p->data.len, opts.header_limit, &pi, why);
	*why = NULL;
	if (r == PROXY_ABSENT) {
		p->px = PX_NONE;
		return 1;
	}
	/* fewer bytes than a header and a preamble could share */
	if (r == PROXY_MORE && p->data.len < SIG_SEEN)
		return 0;
	*why = "sent a PROXY preamble, but its address is not one of "
	    "--proxy-from";
	return -1;
}

/* The preamble named the client at src: it is p's peer from now on. */
static void
adopt(struct pending *p, const struct sockaddr_storage *src)
{
	char		 host[INET6_ADDRSTRLEN];
	const void	*a;
	uint16_t	 port;
	struct source	*s;

	if (src->ss_family == AF_INET) {
		a = &((const struct sockaddr_in *)src)->sin_addr;
		port = ntohs(((const struct sockaddr_in *)src)->sin_port);
	} else {
		a = &((const struct sockaddr_in6 *)src)->sin6_addr;
		port = ntohs(((const struct sockaddr_in6 *)src)->sin6_port);
	}
	if (inet_ntop(src->ss_family, a, host, sizeof(host)) == NULL)
		fatal("inet_ntop");	/* the buffer fits any address */
	log_info("client %s port %u (via %s port %u)", host, port, p->peer,
	    p->port);
	s = source_get(host);
	source_del_pending(p->src, p);
	source_put(p->src);
	p->src = s;
	source_add_pending(s, p);
	strlcpy(p->peer, host, sizeof(p->peer));
	p->port = port;
	p->px = PX_CHECK;
	pending_connected(p);
	/* trimmed when pending_expire() next runs, at once */
	if (!stopping && opts.max_source_pending != 0 &&
	    s->npending > opts.max_source_pending)
		source_trim_add(s);
}

/*
 * Does the preamble name the connection's own peer, address and port?
 * HAProxy's v1 health checks do (its v2 ones say LOCAL): the proxy
 * speaks for itself.
 */
static int
is_self(const struct pending *p, const struct sockaddr_storage *src)
{
	uint8_t		 a[16], b[16];
	uint16_t	 port;

	/* (the peer as accepted: a check may be gone by now) */
	if (inet_pton(AF_INET6, p->peer, a) != 1) {
		memcpy(a, mapped, sizeof(mapped));
		if (inet_pton(AF_INET, p->peer, a + 12) != 1)
			return 0;
	}
	if (canon((const struct sockaddr *)src, b, &port) == -1)
		return 0;
	return ntohs(port) == p->port && memcmp(a, b, sizeof(a)) == 0;
}

/* A connection of a --proxy-from address: its preamble first. */
static int
preamble(struct pending *p, const char **why)
{
	static char		 msg[128];
	struct proxy_info	 pi;
	const char		*pwhy;
	int			 r;

	*why = NULL;
	r = proxy_parse(p->data.p, p->data.len, opts.header_limit, &pi, &pwhy);
	if (r == PROXY_MORE)
		return 0;
	if (r == PROXY_ABSENT) {
		*why = "sent no PROXY preamble, which --proxy-from requires "
		    "of its address";
		return -1;
	}
	if (r == PROXY_BAD) {
		snprintf(msg, sizeof(msg), "bad PROXY preamble: %s", pwhy);
		*why = msg;
		return -1;
	}
	p->pre = (size_t)r;
	memmove(p->data.p, p->data.p + r, p->data.len - p->pre);
	p->data.len -= p->pre;
	if (!pi.local && !is_self(p, &pi.src)) {
		adopt(p, &pi.src);
		return 1;
	}
	log_debug("proxy %s port %u: a connection of its own (a health "
	    "check, or a PROXY preamble naming no client)", p->peer, p->port);
	p->px = PX_LOCAL;
	return 1;
}

/*
 * Before p's header is read: 1 when it may be, 0 while more bytes of a
 * preamble are needed, -1 with *why when p is to be refused.
 */
int
proxy_read(struct pending *p, const char **why)
{
	int	 r;

	*why = NULL;
	if (p->px == PX_WANT && (r = preamble(p, why)) != 1)
		return r;
	/* a proxy's own connection that goes on to send a header */
	if (p->px == PX_LOCAL && p->data.len > 0) {
		p->px = PX_CHECK;
		pending_connected(p);
	}
	/* (behind a proxy too: a client's own preamble is no more trusted) */
	if (p->px == PX_CHECK)
		return untrusted(p, why);
	return 1;
}
