/*
 * http.c - the /debug/pprof listener. See http.h.
 *
 * Everything runs on heaptap's thread, which polls the listener and at most
 * HT_HTTP_MAX_CONN connections between its other work, so a client can
 * never block or slow the program's threads, and a slow one only holds its
 * own slot until its deadline. The answers copy Go's net/http/pprof: the same
 * paths, status codes, content types, Content-Disposition and error strings
 * (serveError's text/plain with X-Go-Pprof: 1), so `go tool pprof URL`,
 * Parca and Grafana Alloy treat a heaptap process like a Go service. Beyond
 * Go, requests are bounded: 8 KiB of headers (431), 64 KiB of body (413),
 * Content-Length bodies only (411 for chunked), 10 s to send a request,
 * 503 when every slot is taken, `Connection: close` always.
 *
 * The listening socket is close-on-exec, lives at a high descriptor number
 * (above 1023 when the limit allows: out of select()'s way and of daemons
 * that close low descriptors), and is checked by inode before each poll, so
 * a program that closes it and reuses the number is never served on.
 */
#include "http.h"

#include "log.h"
#include "mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { C_FREE, C_READ, C_WAIT, C_WRITE };

struct conn {
	int fd;
	int state;
	uint64_t deadline; /* ms, monotonic */
	uint64_t since;    /* accepted at */
	char *in;          /* slot_in[] of its slot, or a heap buffer once a body needs room */
	size_t inlen, incap;
	struct ht_buf out;
	size_t sent;
	/* A ?seconds= request waiting for its window to end. */
	struct ht_serve_snap *snap;
	enum ht_serve_kind kind;
	bool head;
};

static int lfd = -1;
static dev_t l_dev;
static ino_t l_ino;
static int l_port;
static struct conn conns[HT_HTTP_MAX_CONN];
static bool inited;

/* Each slot reads its request into its own static buffer: a connection
 * costs no allocation (a flood of them used to map and unmap 72 KiB each);
 * only a request body (a POST to symbol) gets a buffer of its size. */
static char slot_in[HT_HTTP_MAX_CONN][HT_HTTP_MAX_HEADER + 1];

/* Connections are accepted at most HT_HTTP_ACCEPT_RATE a second (bursts of
 * HT_HTTP_ACCEPT_BURST): a flood waits in the kernel's backlog instead of
 * keeping heaptap's thread, and the program's CPU, busy. Scrapers make a
 * few requests a second. */
#define HT_HTTP_ACCEPT_RATE  400
#define HT_HTTP_ACCEPT_BURST 32
static double accept_tokens = HT_HTTP_ACCEPT_BURST;
static uint64_t accept_refilled;
static uint64_t accept_paused_until;

/* A profile built less than HT_HTTP_CACHE_MS ago is served again: however
 * many clients ask, heaptap builds each kind at most once per period, so
 * scrapers cannot turn heaptap's thread into a load on the program. */
static struct {
	struct ht_buf body;
	uint64_t built;
	bool valid;
} cache[3][2];

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ addresses */

static int parse_port(const char *s, unsigned *port)
{
	if (!*s)
		return -EINVAL;
	unsigned v = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > 65535)
			return -EINVAL;
	}
	*port = v;
	return 0;
}

int ht_http_parse_addr(const char *spec, struct sockaddr_storage *sa, unsigned *salen,
                       bool *loopback)
{
	char host[64];
	const char *colon;
	memset(sa, 0, sizeof(*sa));
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = 0;
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || (size_t)(colon - spec) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = 0;
		if (strchr(host, ':'))
			return -EINVAL; /* IPv6 needs brackets */
	}
	unsigned port;
	if (parse_port(colon + 1, &port) != 0)
		return -EINVAL;
	/* No name lookups: they call into NSS and the loader. */
	if (!host[0] || !strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		*salen = sizeof(*v4);
		*loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		*salen = sizeof(*v6);
		*loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
		return 0;
	}
	return -EINVAL;
}

/* Move fd above 1023 when the descriptor limit allows. */
static int high_fd(int fd)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur <= 1100)
		return fd;
	int hi = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
	if (hi < 0)
		return fd;
	close(fd);
	return hi;
}

int ht_http_open(const char *spec)
{
	struct sockaddr_storage sa;
	unsigned salen;
	bool loop;
	if (ht_http_parse_addr(spec, &sa, &salen, &loop) != 0) {
		ht_log("HEAPTAP_HTTP=\"%s\" is not an address (127.0.0.1:6060, [::1]:6060 or :0); "
		       "serving no profiles",
		       spec);
		return -EINVAL;
	}
	int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		ht_log("HEAPTAP_HTTP=%s: cannot open a socket (%s); serving no profiles", spec,
		       strerror(e));
		return -e;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, 64) != 0) {
		int e = errno;
		close(fd);
		ht_log("HEAPTAP_HTTP=%s: %s; serving no profiles", spec,
		       e == EADDRINUSE ? "address already in use" : strerror(e));
		return -e;
	}
	socklen_t len = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	l_port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
	                                       : ((struct sockaddr_in6 *)&sa)->sin6_port);
	fd = high_fd(fd);
	struct stat st;
	fstat(fd, &st);
	l_dev = st.st_dev;
	l_ino = st.st_ino;
	for (int i = 0; i < HT_HTTP_MAX_CONN && !inited; i++)
		conns[i].fd = -1;
	inited = true;
	lfd = fd;
	if (!loop)
		ht_log("HEAPTAP_HTTP=%s listens beyond this machine: anyone who can reach port %d "
		       "can read this process's profiles",
		       spec, l_port);
	else if (strstr(spec, ":0") && spec[strlen(spec) - 1] == '0' &&
	         spec[strlen(spec) - 2] == ':')
		ht_log("serving /debug/pprof/ on http://%s%s%s:%d/debug/pprof/",
		       sa.ss_family == AF_INET6 ? "[" : "",
		       sa.ss_family == AF_INET6 ? "::1" : "127.0.0.1",
		       sa.ss_family == AF_INET6 ? "]" : "", l_port);
	return 0;
}

bool ht_http_active(void)
{
	return lfd >= 0;
}

int ht_http_port(void)
{
	return lfd >= 0 ? l_port : 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = C_FREE;
	if (c->in && (c->in < slot_in[0] || c->in >= slot_in[HT_HTTP_MAX_CONN]))
		ht_mem_free(c->in);
	c->in = NULL;
	c->inlen = c->incap = 0;
	ht_buf_free(&c->out);
	c->sent = 0;
	if (c->snap)
		ht_serve_snap_free(c->snap);
	c->snap = NULL;
}

void ht_http_close(void)
{
	for (int i = 0; i < HT_HTTP_MAX_CONN && inited; i++)
		if (conns[i].state != C_FREE)
			conn_close(&conns[i]);
	if (lfd >= 0)
		close(lfd);
	lfd = -1;
	for (int k = 0; k < 3; k++)
		for (int d = 0; d < 2; d++) {
			ht_buf_free(&cache[k][d].body);
			cache[k][d].valid = false;
		}
}

/* ------------------------------------------------------------ responses */

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 301:
		return "Moved Permanently";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 411:
		return "Length Required";
	case 413:
		return "Request Entity Too Large";
	case 414:
		return "Request URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

static void start_write(struct conn *c)
{
	c->state = C_WRITE;
	c->sent = 0;
	c->deadline = now_ms() + HT_HTTP_SEND_MS;
}

/* A response; the body is copied. headers: extra lines, each ending "\r\n". */
static void respond(struct conn *c, int status, const char *ctype, const char *headers,
                    const void *body, size_t blen, bool head)
{
	char h[512];
	int n = snprintf(h, sizeof(h),
	                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\nX-Content-Type-Options: nosniff\r\n%s\r\n",
	                 status, reason(status), ctype, blen, headers ? headers : "");
	ht_buf_free(&c->out);
	if (n < 0 || (size_t)n >= sizeof(h) || ht_buf_append(&c->out, h, (size_t)n) != 0 ||
	    (!head && blen && ht_buf_append(&c->out, body, blen) != 0)) {
		conn_close(c);
		return;
	}
	start_write(c);
}

/* Go's serveError: text/plain, X-Go-Pprof: 1, the message and a newline. */
static void fail(struct conn *c, int status, const char *msg, bool head)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "%s\n", msg);
	respond(c, status, "text/plain; charset=utf-8", "X-Go-Pprof: 1\r\n", body,
	        n > 0 ? (size_t)n : 0, head);
}

/* Hand the built body over (no copy). */
static void respond_buf(struct conn *c, int status, const char *ctype, const char *headers,
                        struct ht_buf *body, bool head)
{
	respond(c, status, ctype, headers, body->data, body->len, head);
	ht_buf_free(body);
}

/* ------------------------------------------------------------ requests */

static const char *query_get(const char *q, const char *key, char *val, size_t vlen)
{
	size_t kl = strlen(key);
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len >= kl && !strncmp(q, key, kl) && (len == kl || q[kl] == '=')) {
			size_t vl = len > kl ? len - kl - 1 : 0;
			if (vl >= vlen)
				vl = vlen - 1;
			memcpy(val, q + kl + 1 > q + len ? q + len : q + kl + 1, vl);
			val[vl] = 0;
			return val;
		}
		q = amp ? amp + 1 : NULL;
	}
	return NULL;
}

/* strconv.Atoi: the whole string an integer, else the error (-> *ok false). */
static long atoi_go(const char *s, bool *ok)
{
	*ok = false;
	if (!s || !*s)
		return 0;
	const char *p = s;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!*p)
		return 0;
	long v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9' || v > 100000000)
			return 0;
		v = v * 10 + (*p - '0');
	}
	*ok = true;
	return neg ? -v : v;
}

static void serve_index(struct conn *c, bool head)
{
	static const char page[] =
	        "<html>\n<head>\n<title>/debug/pprof/</title>\n</head>\n<body>\n"
	        "/debug/pprof/\n<br>\n<p>Set debug=1 as a query parameter to export in legacy "
	        "text format</p>\n<br>\nTypes of profiles available:\n<table>\n"
	        "<thead><td>Count</td><td>Profile</td></thead>\n"
	        "<tr><td></td><td><a href='allocs?debug=1'>allocs</a></td></tr>\n"
	        "<tr><td></td><td><a href='heap?debug=1'>heap</a></td></tr>\n"
	        "<tr><td></td><td><a href='threads?debug=1'>threads</a></td></tr>\n"
	        "</table>\n<br>\n<p>\n<ul>\n"
	        "<li><div class=profile-name>allocs: </div> A sampling of all past memory "
	        "allocations (heaptap: the heap profile with alloc_space as its default)</li>\n"
	        "<li><div class=profile-name>heap: </div> A sampling of memory allocations of "
	        "live objects. You can specify the seconds GET parameter for a delta profile.</li>\n"
	        "<li><div class=profile-name>threads: </div> Live threads by the stack that "
	        "created them (heaptap)</li>\n"
	        "</ul>\n</p>\n</body>\n</html>\n";
	respond(c, 200, "text/html; charset=utf-8", NULL, page, sizeof(page) - 1, head);
}

static void serve_profile_now(struct conn *c, enum ht_serve_kind kind, int debug,
                              const struct ht_serve_snap *base, bool head)
{
	struct ht_buf body = {0};
	uint64_t now = now_ms();
	int d = debug != 0;
	if (!base && cache[kind][d].valid && now - cache[kind][d].built < HT_HTTP_CACHE_MS &&
	    ht_buf_append(&body, cache[kind][d].body.data, cache[kind][d].body.len) == 0) {
		/* served from the cache */
	} else {
		ht_buf_free(&body);
		int r = ht_serve_profile(kind, debug, base, &body);
		if (r != 0) {
			ht_buf_free(&body);
			fail(c, 500, "failed to collect profile", head);
			return;
		}
		if (!base) {
			ht_buf_free(&cache[kind][d].body);
			cache[kind][d].valid =
			        ht_buf_append(&cache[kind][d].body, body.data, body.len) == 0;
			cache[kind][d].built = now;
		}
	}
	if (debug) {
		respond_buf(c, 200, "text/plain; charset=utf-8", NULL, &body, head);
		return;
	}
	const char *name = kind == HT_SERVE_HEAP     ? "heap"
	                   : kind == HT_SERVE_ALLOCS ? "allocs"
	                                             : "threads";
	char hdr[128];
	snprintf(hdr, sizeof(hdr), "Content-Disposition: attachment; filename=\"%s%s\"\r\n", name,
	         base ? "-delta" : "");
	respond_buf(c, 200, "application/octet-stream", hdr, &body, head);
}

static void route(struct conn *c, const char *method, char *target, const char *body, size_t blen)
{
	bool head = !strcmp(method, "HEAD");
	char *query = strchr(target, '?');
	if (query)
		*query++ = 0;
	const char *path = target;
	static const char prefix[] = "/debug/pprof/";
	if (!strcmp(path, "/debug/pprof")) {
		static const char moved[] = "<a href=\"/debug/pprof/\">Moved Permanently</a>.\n\n";
		respond(c, 301, "text/html; charset=utf-8", "Location: /debug/pprof/\r\n", moved,
		        sizeof(moved) - 1, head);
		return;
	}
	if (strncmp(path, prefix, sizeof(prefix) - 1)) {
		fail(c, 404, "404 page not found", head);
		return;
	}
	const char *name = path + sizeof(prefix) - 1;
	if (!*name) {
		serve_index(c, head);
		return;
	}
	if (!strcmp(name, "symbol")) {
		struct ht_buf out = {0};
		const char *list = !strcmp(method, "POST") ? body : query ? query : "";
		size_t len = !strcmp(method, "POST") ? blen : strlen(list);
		if (ht_serve_symbols(list, len, &out) != 0) {
			ht_buf_free(&out);
			fail(c, 500, "failed to look up symbols", head);
			return;
		}
		respond_buf(c, 200, "text/plain; charset=utf-8", NULL, &out, head);
		return;
	}
	enum ht_serve_kind kind;
	if (!strcmp(name, "heap"))
		kind = HT_SERVE_HEAP;
	else if (!strcmp(name, "allocs"))
		kind = HT_SERVE_ALLOCS;
	else if (!strcmp(name, "threads"))
		kind = HT_SERVE_THREADS;
	else {
		fail(c, 404, "Unknown profile", head);
		return;
	}
	char v[32];
	bool ok;
	long debug = atoi_go(query_get(query, "debug", v, sizeof(v)), &ok);
	const char *sec = query_get(query, "seconds", v, sizeof(v));
	if (!sec || !*sec) {
		serve_profile_now(c, kind, debug != 0, NULL, head);
		return;
	}
	/* Go's checks for a delta, in Go's order. */
	long seconds = atoi_go(sec, &ok);
	if (!ok || seconds <= 0) {
		fail(c, 400, "invalid value for \"seconds\" - must be a positive integer", head);
		return;
	}
	if (kind == HT_SERVE_THREADS) {
		fail(c, 400, "\"seconds\" parameter is not supported for this profile type", head);
		return;
	}
	if (seconds >= HT_HTTP_MAX_SECONDS) {
		fail(c, 400, "profile duration exceeds server's WriteTimeout", head);
		return;
	}
	if (debug != 0) {
		fail(c, 400, "seconds and debug params are incompatible", head);
		return;
	}
	/* Windows may last minutes: at most half the slots wait in one, so
	 * other scrapes are still answered. */
	int waiting = 0;
	for (int i = 0; i < HT_HTTP_MAX_CONN; i++)
		waiting += conns[i].state == C_WAIT;
	if (waiting >= HT_HTTP_MAX_CONN / 2) {
		fail(c, 503, "too many ?seconds= profiles under way; retry", head);
		return;
	}
	if (ht_serve_snap_take(&c->snap) != 0) {
		fail(c, 500, "failed to collect profile", head);
		return;
	}
	c->kind = kind;
	c->head = head;
	c->state = C_WAIT;
	/* One millisecond more: the clock here is in whole milliseconds, and
	 * the window must be at least what was asked, as Go's sleep makes it. */
	c->deadline = now_ms() + (uint64_t)seconds * 1000 + 1;
}

/* The request is complete when this returns true (a response is queued or
 * the connection closed). */
static bool parse(struct conn *c)
{
	char *buf = c->in;
	buf[c->inlen] = 0;
	/* memmem, not strstr: a NUL byte would hide the end of the headers and
	 * hold the connection until its deadline. */
	char *end = memmem(buf, c->inlen, "\r\n\r\n", 4);
	size_t hlen;
	if (end) {
		hlen = (size_t)(end - buf) + 4;
	} else if ((end = memmem(buf, c->inlen, "\n\n", 2))) {
		hlen = (size_t)(end - buf) + 2;
	} else {
		if (memchr(buf, 0, c->inlen)) {
			fail(c, 400, "malformed request line", false);
			return true;
		}
		if (c->inlen >= HT_HTTP_MAX_HEADER) {
			fail(c, 431, "request header fields too large", false);
			return true;
		}
		return false;
	}
	if (hlen > HT_HTTP_MAX_HEADER) {
		fail(c, 431, "request header fields too large", false);
		return true;
	}
	/* No NUL in a request line or header (the parsing below is C strings). */
	if (memchr(buf, 0, hlen)) {
		fail(c, 400, "malformed request line", false);
		return true;
	}
	/* Request line: METHOD SP TARGET SP HTTP/1.x */
	char *eol = strpbrk(buf, "\r\n");
	char line[2200];
	size_t ll = (size_t)(eol - buf);
	if (ll >= sizeof(line)) {
		fail(c, 414, "request URI too long", false);
		return true;
	}
	memcpy(line, buf, ll);
	line[ll] = 0;
	char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || strncmp(sp2 + 1, "HTTP/1.", 7) || sp1 == line ||
	    sp2 == sp1 + 1 || sp1[1] != '/') {
		fail(c, 400, "malformed request line", false);
		return true;
	}
	*sp1 = *sp2 = 0;
	const char *method = line;
	char *target = sp1 + 1;
	for (const char *m = method; *m; m++)
		if (*m < 'A' || *m > 'Z') {
			fail(c, 400, "malformed request line", false);
			return true;
		}
	bool head = !strcmp(method, "HEAD");
	if (strcmp(method, "GET") && !head && strcmp(method, "POST")) {
		fail(c, 405, "method not allowed", false);
		return true;
	}
	/* Headers that matter: Content-Length, Transfer-Encoding. */
	long clen = 0;
	for (char *h = eol; h && h < buf + hlen;) {
		while (*h == '\r' || *h == '\n')
			h++;
		if (h >= buf + hlen)
			break;
		char *next = strpbrk(h, "\r\n");
		if (!strncasecmp(h, "Content-Length:", 15)) {
			char *p = h + 15;
			while (*p == ' ' || *p == '\t')
				p++;
			char *q;
			clen = strtol(p, &q, 10);
			if (q == p || clen < 0) {
				fail(c, 400, "bad Content-Length", head);
				return true;
			}
		} else if (!strncasecmp(h, "Transfer-Encoding:", 18)) {
			fail(c, 411, "length required: chunked bodies are not accepted", head);
			return true;
		}
		h = next;
	}
	if (clen > HT_HTTP_MAX_BODY) {
		fail(c, 413, "request body too large", head);
		return true;
	}
	if (hlen + (size_t)clen > c->incap) {
		/* Room for the body, in a buffer of its own. */
		char *big = ht_mem_alloc(hlen + (size_t)clen + 1);
		if (!big) {
			fail(c, 503, "out of memory for the request body", head);
			return true;
		}
		memcpy(big, c->in, c->inlen);
		c->in = big;
		c->incap = hlen + (size_t)clen;
		return false;
	}
	if (c->inlen < hlen + (size_t)clen)
		return false; /* the body is still coming */
	route(c, method, target, buf + hlen, (size_t)clen);
	return true;
}

/* ------------------------------------------------------------ the loop */

static bool listener_ours(void)
{
	struct stat st;
	if (lfd < 0)
		return false;
	if (fstat(lfd, &st) != 0 || st.st_dev != l_dev || st.st_ino != l_ino) {
		/* The program closed it (and may reuse the number): not ours. */
		ht_log("the /debug/pprof listener's descriptor %d was closed by the program; "
		       "serving stopped",
		       lfd);
		lfd = -1;
		return false;
	}
	return true;
}

int ht_http_pollfds(struct pollfd *fds, int *timeout_ms)
{
	int n = 0;
	if (!listener_ours())
		return 0;
	uint64_t now = now_ms();
	bool paused = accept_paused_until > now;
	fds[n++] = (struct pollfd){.fd = lfd, .events = paused ? 0 : POLLIN};
	if (paused && (int)(accept_paused_until - now) < *timeout_ms)
		*timeout_ms = (int)(accept_paused_until - now);
	for (int i = 0; i < HT_HTTP_MAX_CONN; i++) {
		struct conn *c = &conns[i];
		if (c->state == C_FREE)
			continue;
		short ev = c->state == C_WRITE ? POLLOUT : POLLIN;
		fds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
		int left = c->deadline > now ? (int)(c->deadline - now) : 0;
		if (left < *timeout_ms)
			*timeout_ms = left;
	}
	return n;
}

static void do_read(struct conn *c)
{
	for (;;) {
		if (c->inlen >= c->incap) {
			fail(c, c->incap > HT_HTTP_MAX_HEADER ? 413 : 431,
			     c->incap > HT_HTTP_MAX_HEADER ? "request too large"
			                                   : "request header fields too large",
			     false);
			return;
		}
		ssize_t r = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
		if (r > 0) {
			c->inlen += (size_t)r;
			if (parse(c))
				return;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_close(c); /* EOF or error before a whole request */
		return;
	}
}

static void do_write(struct conn *c)
{
	while (c->sent < c->out.len) {
		ssize_t r = send(c->fd, c->out.data + c->sent, c->out.len - c->sent,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			c->sent += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		break; /* the client went away mid-response */
	}
	shutdown(c->fd, SHUT_WR);
	conn_close(c);
}

/* Every slot taken: a client still sending its request after HT_HTTP_EVICT_MS
 * (a scraper sends it in one packet) gives its slot to the newcomer, oldest
 * first, so slow-drip clients cannot hold the listener. */
static struct conn *evict_slowest(void)
{
	uint64_t now = now_ms();
	struct conn *old = NULL;
	for (int i = 0; i < HT_HTTP_MAX_CONN; i++) {
		struct conn *c = &conns[i];
		if (c->state == C_READ && now - c->since >= HT_HTTP_EVICT_MS &&
		    (!old || c->since < old->since))
			old = c;
	}
	if (!old)
		return NULL;
	conn_close(old);
	return old;
}

static void do_accept(void)
{
	/* A bounded number per round, so a flood cannot starve heaptap's work. */
	uint64_t now = now_ms();
	accept_tokens += (double)(now - accept_refilled) * HT_HTTP_ACCEPT_RATE / 1000.0;
	if (accept_tokens > HT_HTTP_ACCEPT_BURST)
		accept_tokens = HT_HTTP_ACCEPT_BURST;
	accept_refilled = now;
	for (;;) {
		if (accept_tokens < 1) {
			accept_paused_until = now + 1 + (uint64_t)(1000 / HT_HTTP_ACCEPT_RATE);
			return;
		}
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		accept_tokens -= 1;
		struct conn *c = NULL;
		for (int i = 0; i < HT_HTTP_MAX_CONN && !c; i++)
			if (conns[i].state == C_FREE)
				c = &conns[i];
		if (!c)
			c = evict_slowest();
		if (!c) {
			static const char busy[] =
			        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
			        "charset=utf-8\r\nContent-Length: 39\r\nConnection: close\r\n"
			        "X-Content-Type-Options: nosniff\r\n"
			        "X-Go-Pprof: 1\r\n\r\ntoo many connections to heaptap; retry\n";
			ssize_t r = send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
			/* FIN before close, and the request that came with the
			 * connection read away: a close with unread data sends a
			 * reset in place of the FIN, and the client then reports
			 * "connection reset" rather than the 503 it was sent. */
			shutdown(fd, SHUT_WR);
			char junk[1024];
			for (int i = 0; i < 8 && r > 0; i++)
				if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
					break;
			close(fd);
			continue;
		}
		c->in = slot_in[c - conns];
		c->incap = HT_HTTP_MAX_HEADER;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->state = C_READ;
		c->inlen = 0;
		c->since = now_ms();
		c->deadline = c->since + HT_HTTP_REQ_MS;
	}
}

void ht_http_service(const struct pollfd *fds, int n)
{
	if (lfd < 0)
		return;
	for (int k = 1; k < n; k++) {
		for (int i = 0; i < HT_HTTP_MAX_CONN; i++) {
			struct conn *c = &conns[i];
			if (c->state == C_FREE || c->fd != fds[k].fd || !fds[k].revents)
				continue;
			if (c->state == C_READ) {
				do_read(c);
				if (c->state == C_WRITE)
					do_write(c);
			} else if (c->state == C_WRITE)
				do_write(c);
			else if (c->state == C_WAIT) {
				/* A waiting client that hangs up frees its slot. */
				char b[256];
				ssize_t r = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
					conn_close(c);
			}
			break;
		}
	}
	uint64_t now = now_ms();
	for (int i = 0; i < HT_HTTP_MAX_CONN; i++) {
		struct conn *c = &conns[i];
		if (c->state == C_FREE || c->deadline > now)
			continue;
		if (c->state == C_READ) {
			/* Too slow: whatever it has sent, it is not a request in time. */
			fail(c, 408, "request timeout", false);
			do_write(c);
		} else if (c->state == C_WAIT) {
			struct ht_serve_snap *s = c->snap;
			c->snap = NULL;
			serve_profile_now(c, c->kind, 0, s, c->head);
			ht_serve_snap_free(s);
			if (c->state == C_WRITE)
				do_write(c);
		} else {
			conn_close(c); /* the response did not leave in time */
		}
	}
	/* A cached body is dropped once it has expired, not kept until the next
	 * request of its kind: the ?debug=1 text of a program with thousands of
	 * deep stacks runs to tens of MB. */
	for (int k = 0; k < 3; k++)
		for (int d = 0; d < 2; d++)
			if (cache[k][d].valid && now - cache[k][d].built >= HT_HTTP_CACHE_MS) {
				ht_buf_free(&cache[k][d].body);
				cache[k][d].valid = false;
			}
	if (n > 0 && (fds[0].revents & POLLIN))
		do_accept();
}
