/*
 * The PROXY protocol preamble that a load balancer (HAProxy's send-proxy
 * and send-proxy-v2) writes before the client's own bytes, naming the
 * client's real address: version 1 is one text line, version 2 a binary
 * block.  A pure parser, fed the connection's first bytes as they arrive;
 * whether a peer may send a preamble at all is the caller's decision.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <string.h>

#include "proto/proto.h"

static const uint8_t	 v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
static const char	 v1sig[] = "PROXY ";

#define V1_MAX		107	/* the longest line allowed, CRLF included */
#define V2_HDR		16	/* signature, version/command, family, length */
#define V2_ADDR4	12	/* two IPv4 addresses, two ports */
#define V2_ADDR6	36	/* two IPv6 addresses, two ports */

/* Does buf[0..len) agree with sig as far as both go? */
static int
agrees(const void *buf, size_t len, const void *sig, size_t siglen)
{
	return memcmp(buf, sig, len < siglen ? len : siglen) == 0;
}

/* A decimal port: 1-5 digits, no sign, no leading zero, at most 65535. */
static int
v1_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long	 v = 0;
	size_t		 i;

	if (len == 0 || len > 5 || (s[0] == '0' && len > 1))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* An address of family af and its port into sa. */
static int
v1_endpoint(int af, const char *a, size_t alen, const char *p, size_t plen,
    struct sockaddr_storage *sa)
{
	char			 tmp[INET6_ADDRSTRLEN];
	struct sockaddr_in	*s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)sa;
	uint16_t		 port;
	int			 ok;

	if (alen == 0 || alen >= sizeof(tmp) || v1_port(p, plen, &port) == -1)
		return -1;
	memcpy(tmp, a, alen);
	tmp[alen] = '\0';
	memset(sa, 0, sizeof(*sa));
	if (af == AF_INET) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		ok = inet_pton(AF_INET, tmp, &s4->sin_addr);
	} else {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		ok = inet_pton(AF_INET6, tmp, &s6->sin6_addr);
	}
	return ok == 1 ? 0 : -1;
}

/*
 * "PROXY TCP4 SRC DST SPORT DPORT\r\n" (or TCP6), single spaces and
 * nothing else; or "PROXY UNKNOWN" with anything up to the CRLF, which
 * leaves the connection's own addresses in force.
 */
static int
v1_parse(const char *p, size_t len, struct proxy_info *pi, const char **why)
{
	const char	*end, *s, *tok[4];
	size_t		 toklen[4], n, i;
	int		 af;

	if ((end = memchr(p, '\n', len < V1_MAX ? len : V1_MAX)) == NULL) {
		if (len < V1_MAX)
			return PROXY_MORE;
		*why = "PROXY line too long";
		return PROXY_BAD;
	}
	if (end[-1] != '\r') {
		*why = "PROXY line not ended by CRLF";
		return PROXY_BAD;
	}
	s = p + sizeof(v1sig) - 1;
	n = (size_t)(end - 1 - s);	/* up to the \r */
	if (n >= 7 && memcmp(s, "UNKNOWN", 7) == 0 &&
	    (n == 7 || s[7] == ' ')) {
		pi->local = 1;
		return (int)(end + 1 - p);
	}
	if (n < 5 || memcmp(s, "TCP", 3) != 0 ||
	    (s[3] != '4' && s[3] != '6') || s[4] != ' ') {
		*why = "PROXY line with an unknown protocol";
		return PROXY_BAD;
	}
	af = s[3] == '4' ? AF_INET : AF_INET6;
	s += 5;
	n -= 5;
	for (i = 0; i < 4; i++) {
		const char *sp = memchr(s, ' ', n);

		tok[i] = s;
		toklen[i] = sp != NULL ? (size_t)(sp - s) : n;
		if ((sp == NULL) != (i == 3)) {
			*why = "PROXY line without exactly four fields";
			return PROXY_BAD;
		}
		if (sp != NULL) {
			n -= toklen[i] + 1;
			s = sp + 1;
		}
	}
	if (v1_endpoint(af, tok[0], toklen[0], tok[2], toklen[2], &pi->src)
	    == -1 ||
	    v1_endpoint(af, tok[1], toklen[1], tok[3], toklen[3], &pi->dst)
	    == -1) {
		*why = "PROXY line with a bad address or port";
		return PROXY_BAD;
	}
	pi->local = 0;
	return (int)(end + 1 - p);
}

/*
 * The binary form: the signature, version 2 with command LOCAL (the
 * proxy's own connection, a health check) or PROXY, the family and
 * transport, the length of what follows, the addresses, then TLVs, which
 * are skipped.  Only TCP over IPv4 or IPv6 names a client; UNSPEC and
 * UNIX keep the connection's own addresses, as the specification asks.
 */
static int
v2_parse(const uint8_t *p, size_t len, size_t max, struct proxy_info *pi,
    const char **why)
{
	struct sockaddr_in	*s4 = (struct sockaddr_in *)&pi->src;
	struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)&pi->src;
	struct sockaddr_in	*d4 = (struct sockaddr_in *)&pi->dst;
	struct sockaddr_in6	*d6 = (struct sockaddr_in6 *)&pi->dst;
	size_t			 total;
	int			 cmd, fam, proto;

	if (len < V2_HDR)
		return PROXY_MORE;
	if ((p[12] >> 4) != 2) {
		*why = "PROXY v2 block with a bad version";
		return PROXY_BAD;
	}
	cmd = p[12] & 0xf;
	fam = p[13] >> 4;
	proto = p[13] & 0xf;
	total = V2_HDR + ((size_t)p[14] << 8 | p[15]);
	if (cmd > 1 || fam > 3 || proto > 2) {
		*why = "PROXY v2 block with an unknown command or family";
		return PROXY_BAD;
	}
	if (total > max) {
		*why = "PROXY v2 block too long";
		return PROXY_BAD;
	}
	if (len < total)
		return PROXY_MORE;
	memset(&pi->src, 0, sizeof(pi->src));
	memset(&pi->dst, 0, sizeof(pi->dst));
	pi->local = 1;
	if (cmd == 0 || fam == 0 || fam == 3)
		return (int)total;
	if (proto != 1) {
		*why = "PROXY v2 block for a transport other than TCP";
		return PROXY_BAD;
	}
	if (fam == 1) {
		if (total < V2_HDR + V2_ADDR4)
			goto short_block;
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p + 16, 4);
		memcpy(&d4->sin_addr, p + 20, 4);
		memcpy(&s4->sin_port, p + 24, 2);
		memcpy(&d4->sin_port, p + 26, 2);
	} else {
		if (total < V2_HDR + V2_ADDR6)
			goto short_block;
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, p + 16, 16);
		memcpy(&d6->sin6_addr, p + 32, 16);
		memcpy(&s6->sin6_port, p + 48, 2);
		memcpy(&d6->sin6_port, p + 50, 2);
	}
	pi->local = 0;
	return (int)total;
short_block:
	*why = "PROXY v2 block too short for its addresses";
	return PROXY_BAD;
}

int
proxy_parse(const void *buf, size_t len, size_t max, struct proxy_info *pi,
    const char **why)
{
	const char	*p = buf;

	*why = NULL;
	if (len == 0)
		return PROXY_MORE;
	if (agrees(p, len, v2sig, sizeof(v2sig))) {
		if (len < sizeof(v2sig))
			return PROXY_MORE;
		return v2_parse(buf, len, max, pi, why);
	}
	if (agrees(p, len, v1sig, sizeof(v1sig) - 1)) {
		if (len < sizeof(v1sig) - 1)
			return PROXY_MORE;
		return v1_parse(p, len, pi, why);
	}
	*why = "no PROXY preamble";
	return PROXY_ABSENT;
}
