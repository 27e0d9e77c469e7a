/*
 * maps.c - executable mappings of this process, their load bias and build ID.
 *
 * Owns the /proc/self/maps parser (ht_maps_*), the small ELF reader that
 * finds a module's load bias and GNU build ID, and ht_module_from_memory()
 * for the dlclose hook. It reads with open/read/pread only, keeps everything
 * in ht_mem memory, and never calls malloc or stdio. Memory of the process is
 * read with process_vm_readv on ourselves, so a module unmapped by another
 * thread in the meantime gives EFAULT instead of a crash; where that call is
 * not allowed (seccomp), it falls back to plain loads.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "maps.h"
#include "mem.h"

#define HT_PAGE_MASK ((uint64_t)4095)
#define HT_MAX_PHDRS 64
#define HT_DELETED " (deleted)"

/* ---------------------------------------------------------------------------
 * Reading bytes from a file (fd >= 0, positions are file offsets) or from our
 * own memory (fd < 0, positions are addresses). */

struct src {
	int fd;
};

static atomic_int vm_readv_broken;

static int mem_read(uint64_t addr, void *buf, size_t n)
{
	if (!atomic_load_explicit(&vm_readv_broken, memory_order_relaxed)) {
		struct iovec local = {buf, n}, remote = {(void *)(uintptr_t)addr, n};
		ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		if (r == (ssize_t)n)
			return 0;
		if (r >= 0 || errno == EFAULT)
			return -EFAULT;
		if (errno != ENOSYS && errno != EPERM)
			return -errno;
		atomic_store_explicit(&vm_readv_broken, 1, memory_order_relaxed);
	}
	memcpy(buf, (const void *)(uintptr_t)addr, n);
	return 0;
}

static int src_read(const struct src *s, uint64_t pos, void *buf, size_t n)
{
	if (s->fd < 0)
		return mem_read(pos, buf, n);
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(s->fd, (char *)buf + done, n - done, (off_t)(pos + done));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * ELF: program headers, load bias, build ID. Only native 64-bit ELF. */

struct elf_hdrs {
	Elf64_Phdr ph[HT_MAX_PHDRS];
	unsigned n;
};

static int elf_read_phdrs(const struct src *s, uint64_t base, struct elf_hdrs *h)
{
	Elf64_Ehdr eh;
	int err = src_read(s, base, &eh, sizeof(eh));
	if (err)
		return err;
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr))
		return -ENOEXEC;
	h->n = eh.e_phnum < HT_MAX_PHDRS ? eh.e_phnum : HT_MAX_PHDRS;
	return src_read(s, base + eh.e_phoff, h->ph, h->n * sizeof(Elf64_Phdr));
}

/* Walk the notes in [pos, pos+size) for NT_GNU_BUILD_ID. */
static int elf_note_build_id(const struct src *s, uint64_t pos, uint64_t size, uint64_t align,
			     uint8_t *id, size_t cap)
{
	uint64_t a = align == 8 ? 8 : 4;
	uint64_t end = pos + size;
	while (pos + sizeof(Elf64_Nhdr) <= end) {
		Elf64_Nhdr nh;
		int err = src_read(s, pos, &nh, sizeof(nh));
		if (err)
			return err;
		uint64_t name = pos + sizeof(nh);
		uint64_t desc = name + (((uint64_t)nh.n_namesz + a - 1) & ~(a - 1));
		uint64_t next = desc + (((uint64_t)nh.n_descsz + a - 1) & ~(a - 1));
		if (desc > end || desc + nh.n_descsz > end || next <= pos)
			return -ENOENT;
		if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && nh.n_descsz > 0 &&
		    nh.n_descsz <= cap) {
			char nm[4];
			err = src_read(s, name, nm, 4);
			if (err)
				return err;
			if (memcmp(nm, "GNU", 4) == 0) {
				err = src_read(s, desc, id, nh.n_descsz);
				return err ? err : (int)nh.n_descsz;
			}
		}
		pos = next;
	}
	return -ENOENT;
}

/* Build ID from the PT_NOTE segments; in memory notes sit at bias + vaddr,
 * in a file at p_offset. */
static int elf_build_id(const struct src *s, const struct elf_hdrs *h, uint64_t bias, uint8_t *id,
			size_t cap)
{
	for (unsigned i = 0; i < h->n; i++) {
		const Elf64_Phdr *p = &h->ph[i];
		if (p->p_type != PT_NOTE)
			continue;
		uint64_t pos = s->fd < 0 ? bias + p->p_vaddr : p->p_offset;
		int r = elf_note_build_id(s, pos, p->p_filesz, p->p_align, id, cap);
		if (r > 0)
			return r;
	}
	return -ENOENT;
}

/* The PT_LOAD mapped at file offset off (page-truncated); NULL if none. */
static const Elf64_Phdr *elf_load_at(const struct elf_hdrs *h, uint64_t off)
{
	for (unsigned i = 0; i < h->n; i++) {
		const Elf64_Phdr *p = &h->ph[i];
		if (p->p_type == PT_LOAD && (p->p_offset & ~HT_PAGE_MASK) == off)
			return p;
	}
	return NULL;
}

static int open_ro(const char *path)
{
	int fd;
	do
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

int ht_maps_build_id_file(const char *path, uint8_t *id, size_t cap)
{
	int fd = open_ro(path);
	if (fd < 0)
		return fd;
	struct src s = {fd};
	struct elf_hdrs h;
	int r = elf_read_phdrs(&s, 0, &h);
	if (r == 0)
		r = elf_build_id(&s, &h, 0, id, cap);
	close(fd);
	return r;
}

char *ht_maps_hex(const uint8_t *id, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[2 * n] = 0;
	return out;
}

/* ---------------------------------------------------------------------------
 * /proc/self/maps */

struct line {
	uintptr_t start, end;
	uint64_t offset, inode;
	char perms[4];
	const char *path; /* into the text, not terminated */
	size_t plen;
	bool deleted;
};

static const char *parse_hex(const char *p, const char *e, uint64_t *v)
{
	uint64_t x = 0;
	const char *s = p;
	for (; p < e; p++) {
		unsigned c = (unsigned char)*p, d;
		if (c - '0' < 10)
			d = c - '0';
		else if ((c | 32) - 'a' < 6)
			d = (c | 32) - 'a' + 10;
		else
			break;
		x = x << 4 | d;
	}
	*v = x;
	return p == s ? NULL : p;
}

static const char *skip_spaces(const char *p, const char *e)
{
	while (p < e && *p == ' ')
		p++;
	return p;
}

/* One line "start-end perms offset dev inode   path"; false if malformed. */
static bool parse_line(const char *p, const char *e, struct line *l)
{
	uint64_t v;
	memset(l, 0, sizeof(*l));
	if (!(p = parse_hex(p, e, &v)) || p >= e || *p++ != '-')
		return false;
	l->start = v;
	if (!(p = parse_hex(p, e, &v)) || p >= e || *p++ != ' ')
		return false;
	l->end = v;
	if (e - p < 5 || p[4] != ' ')
		return false;
	memcpy(l->perms, p, 4);
	p += 5;
	if (!(p = parse_hex(p, e, &l->offset)) || p >= e || *p++ != ' ')
		return false;
	while (p < e && *p != ' ') /* dev */
		p++;
	p = skip_spaces(p, e);
	uint64_t inode = 0;
	while (p < e && *p >= '0' && *p <= '9')
		inode = inode * 10 + (uint64_t)(*p++ - '0');
	l->inode = inode;
	p = skip_spaces(p, e);
	l->path = p;
	l->plen = (size_t)(e - p);
	size_t dl = sizeof(HT_DELETED) - 1;
	if (l->plen >= dl && memcmp(p + l->plen - dl, HT_DELETED, dl) == 0) {
		l->plen -= dl;
		l->deleted = true;
	}
	return l->end > l->start;
}

static bool same_path(const struct line *a, const struct line *b)
{
	return a->plen == b->plen && memcmp(a->path, b->path, a->plen) == 0;
}

/* Fill bias and build ID of exec mapping x (lines[xi]). */
static void read_elf_info(struct ht_mapping *x, const struct line *lines, size_t xi)
{
	const struct line *l = &lines[xi];
	struct elf_hdrs h;

	/* The header mapping: the nearest readable offset-0 mapping of the same
	 * file at or below this one. */
	for (size_t i = xi + 1; i-- > 0;) {
		const struct line *hl = &lines[i];
		if (hl->offset != 0 || hl->perms[0] != 'r' || !same_path(hl, l))
			continue;
		struct src s = {-1};
		if (elf_read_phdrs(&s, hl->start, &h) != 0)
			break;
		const Elf64_Phdr *p0 = elf_load_at(&h, 0);
		if (!p0)
			break;
		x->m.bias = hl->start - (p0->p_vaddr & ~HT_PAGE_MASK);
		x->bias_ok = true;
		int r = elf_build_id(&s, &h, x->m.bias, x->m.build_id, sizeof(x->m.build_id));
		if (r > 0) {
			x->m.build_id_len = (uint8_t)r;
			return;
		}
		break;
	}
	/* A deleted file's path may name a different file now. */
	if (!x->path_ok || x->deleted)
		return;

	/* The file on disk (also when the headers in memory gave no build ID). */
	int fd = open_ro(x->m.path);
	if (fd < 0)
		return;
	struct src s = {fd};
	if (elf_read_phdrs(&s, 0, &h) == 0) {
		const Elf64_Phdr *p = elf_load_at(&h, x->m.file_offset);
		if (!x->bias_ok && p) {
			x->m.bias = x->m.start - (p->p_vaddr & ~HT_PAGE_MASK);
			x->bias_ok = true;
		}
		int r = elf_build_id(&s, &h, 0, x->m.build_id, sizeof(x->m.build_id));
		if (r > 0)
			x->m.build_id_len = (uint8_t)r;
	}
	close(fd);
}

static void set_path(struct ht_mapping *x, const char *p, size_t n)
{
	size_t cap = sizeof(x->m.path) - 1;
	size_t k = n < cap ? n : cap;
	memcpy(x->m.path, p, k);
	x->m.path[k] = 0;
	x->path_ok = n <= cap && n > 0 && p[0] == '/';
}

int ht_maps_parse(struct ht_maps *maps, const char *text, size_t len, const char *exe,
		  bool read_elf)
{
	memset(maps, 0, sizeof(*maps));
	size_t nlines = 0;
	for (size_t i = 0; i < len; i++)
		nlines += text[i] == '\n';
	nlines++;
	struct line *lines = ht_mem_calloc(nlines, sizeof(*lines));
	if (!lines)
		return -ENOMEM;

	size_t n = 0, nexec = 0;
	const char *p = text, *end = text + len;
	while (p < end && n < nlines) {
		const char *e = memchr(p, '\n', (size_t)(end - p));
		if (!e)
			e = end;
		if (parse_line(p, e, &lines[n])) {
			struct line *l = &lines[n++];
			/* Keep exec mappings with a name; a nameless inode-0 piece
			 * (huge-page text, JIT code) has nothing to point to. */
			if (l->perms[2] == 'x' && l->plen > 0)
				nexec++;
		}
		p = e + 1;
	}

	maps->v = ht_mem_calloc(nexec ? nexec : 1, sizeof(*maps->v));
	if (!maps->v) {
		ht_mem_free(lines);
		return -ENOMEM;
	}
	size_t exelen = exe ? strlen(exe) : 0;
	size_t dl = sizeof(HT_DELETED) - 1;
	if (exelen >= dl && memcmp(exe + exelen - dl, HT_DELETED, dl) == 0)
		exelen -= dl;
	maps->main = nexec;
	for (size_t i = 0; i < n; i++) {
		const struct line *l = &lines[i];
		if (l->perms[2] != 'x' || l->plen == 0)
			continue;
		if (maps->n > 0 && l->start < maps->v[maps->n - 1].m.limit)
			continue; /* not sorted or overlapping: never from the kernel */
		struct ht_mapping *x = &maps->v[maps->n];
		x->m.start = l->start;
		x->m.limit = l->end;
		x->m.file_offset = l->offset;
		x->m.bias = l->start - l->offset;
		x->deleted = l->deleted;
		set_path(x, l->path, l->plen);
		if (maps->main == nexec && exelen && l->plen == exelen &&
		    memcmp(l->path, exe, exelen) == 0)
			maps->main = maps->n;
		if (read_elf && (x->path_ok || l->perms[0] == 'r'))
			read_elf_info(x, lines, i);
		maps->n++;
	}
	if (maps->main == nexec)
		maps->main = maps->n;
	ht_mem_free(lines);
	return 0;
}

int ht_maps_read(struct ht_maps *maps)
{
	memset(maps, 0, sizeof(*maps));
	int fd = open_ro("/proc/self/maps");
	if (fd < 0)
		return fd;
	size_t cap = 64 << 10, len = 0;
	char *buf = ht_mem_alloc(cap);
	int err = buf ? 0 : -ENOMEM;
	while (!err) {
		if (cap - len < 4096) {
			char *nb = ht_mem_realloc(buf, cap * 2);
			if (!nb) {
				err = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno != EINTR)
				err = -errno;
			continue;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);

	char exe[512];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[el > 0 ? el : 0] = 0;
	if (!err)
		err = ht_maps_parse(maps, buf, len, exe, true);
	ht_mem_free(buf);
	return err;
}

void ht_maps_free(struct ht_maps *maps)
{
	ht_mem_free(maps->v);
	memset(maps, 0, sizeof(*maps));
}

const struct ht_mapping *ht_maps_find(const struct ht_maps *maps, uintptr_t pc)
{
	size_t lo = 0, hi = maps->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct ht_mapping *x = &maps->v[mid];
		if (pc < x->m.start)
			hi = mid;
		else if (pc >= x->m.limit)
			lo = mid + 1;
		else
			return x;
	}
	return NULL;
}

/* ---------------------------------------------------------------------------
 * ht_module_from_memory */

struct find_arg {
	const char *path;
	uintptr_t bias;
	struct ht_module *m;
	int found;
};

static int module_from_phdrs(struct ht_module *m, const struct src *s, const struct elf_hdrs *h,
			     uintptr_t bias)
{
	const Elf64_Phdr *x = NULL;
	for (unsigned i = 0; i < h->n && !x; i++)
		if (h->ph[i].p_type == PT_LOAD && (h->ph[i].p_flags & PF_X))
			x = &h->ph[i];
	if (!x)
		return -ENOEXEC;
	m->bias = bias;
	m->start = bias + (x->p_vaddr & ~HT_PAGE_MASK);
	m->limit = (bias + x->p_vaddr + x->p_memsz + HT_PAGE_MASK) & ~HT_PAGE_MASK;
	m->file_offset = x->p_offset & ~HT_PAGE_MASK;
	int r = elf_build_id(s, h, bias, m->build_id, sizeof(m->build_id));
	m->build_id_len = r > 0 ? (uint8_t)r : 0;
	return 0;
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct find_arg *a = data;
	(void)size;
	if (info->dlpi_addr != a->bias || !info->dlpi_name || strcmp(info->dlpi_name, a->path) != 0)
		return 0;
	struct elf_hdrs h;
	h.n = info->dlpi_phnum < HT_MAX_PHDRS ? info->dlpi_phnum : HT_MAX_PHDRS;
	memcpy(h.ph, info->dlpi_phdr, h.n * sizeof(Elf64_Phdr));
	struct src s = {-1};
	a->found = module_from_phdrs(a->m, &s, &h, info->dlpi_addr) == 0 ? 1 : -1;
	return 1;
}

int ht_module_from_memory(const char *path, uintptr_t bias, struct ht_module *m)
{
	if (!path || !*path)
		return -EINVAL;
	size_t n = strlen(path);
	if (n >= sizeof(m->path))
		return -ENAMETOOLONG;
	memset(m, 0, sizeof(*m));
	memcpy(m->path, path, n + 1);

	struct find_arg a = {path, bias, m, 0};
	dl_iterate_phdr(find_cb, &a);
	if (a.found > 0)
		return 0;

	/* Not (or no longer) in the link map: read the file. */
	int fd = open_ro(path);
	if (fd < 0)
		return fd;
	struct src s = {fd};
	struct elf_hdrs h;
	int err = elf_read_phdrs(&s, 0, &h);
	if (!err)
		err = module_from_phdrs(m, &s, &h, bias);
	close(fd);
	return err;
}
