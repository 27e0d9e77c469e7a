/*
 * maps.c - executable mappings of this process, their load bias and build ID.
 *
 * Owns the /proc/self/maps parser (ht_maps_*), the small ELF reader that
 * finds a module's load bias and GNU build ID, and ht_module_from_memory()
 * for the dlclose hook. It reads with open/read/pread only, keeps everything
 * in ht_mem memory, and never calls malloc or stdio.
 *
 * The process's own memory is read only inside dl_iterate_phdr callbacks,
 * for objects the dynamic linker lists: the loader lock is held there, so no
 * other thread can dlclose (unmap) the object while its notes are read, and
 * no syscall a seccomp filter might forbid (process_vm_readv) is needed.
 * Note segments are read only where a PT_LOAD covers them. Mappings the
 * dynamic linker does not know (files mmap'ed by hand) are read from disk,
 * unless the file was deleted: its path may name another file by now.
 */
#include "maps.h"

#include "io.h"
#include "mem.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <unistd.h>

#define HT_PAGE_MASK ((uint64_t)4095)
#define HT_MAX_PHDRS 64
#define HT_DELETED   " (deleted)"

/* ---------------------------------------------------------------------------
 * Reading bytes from a file (fd >= 0, positions are file offsets) or from a
 * loaded object under the loader lock (fd < 0, positions are addresses). */

struct src {
	int fd;
};

static int src_read(const struct src *s, uint64_t pos, void *buf, size_t n)
{
	if (s->fd < 0) {
		memcpy(buf, (const void *)(uintptr_t)pos, n);
		return 0;
	}
	return ht_io_pread_all(s->fd, buf, n, pos);
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

/* True when [vaddr, vaddr+size) lies in the file-backed part of a PT_LOAD. */
static bool elf_loaded(const struct elf_hdrs *h, uint64_t vaddr, uint64_t size)
{
	for (unsigned i = 0; i < h->n; i++) {
		const Elf64_Phdr *p = &h->ph[i];
		if (p->p_type == PT_LOAD && vaddr >= p->p_vaddr &&
		    vaddr + size <= p->p_vaddr + p->p_filesz && vaddr + size >= vaddr)
			return true;
	}
	return false;
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
		if (s->fd < 0 && !elf_loaded(h, p->p_vaddr, p->p_filesz))
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

/* Bias and build ID of mapping x from the file on disk (its first page is
 * not readable in memory: rare). */
static void read_elf_file(struct ht_mapping *x)
{
	if (!x->bias_ok) {
		int fd = open_ro(x->m.path);
		if (fd < 0)
			return;
		struct src s = {fd};
		struct elf_hdrs h;
		const Elf64_Phdr *p;
		if (elf_read_phdrs(&s, 0, &h) == 0 && (p = elf_load_at(&h, x->m.file_offset))) {
			x->m.bias = x->m.start - (p->p_vaddr & ~HT_PAGE_MASK);
			x->bias_ok = true;
		}
		close(fd);
	}
	if (!x->m.build_id_len) {
		int r = ht_maps_build_id_file(x->m.path, x->m.build_id, sizeof(x->m.build_id));
		if (r > 0)
			x->m.build_id_len = (uint8_t)r;
	}
}

/* For every object the dynamic linker has loaded: its executable segments
 * tell which mappings are its, dlpi_addr is their bias, and its notes (read
 * under the loader lock) give the build ID. */
static int loaded_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct ht_maps *maps = data;
	(void)size;
	struct elf_hdrs h;
	h.n = info->dlpi_phnum < HT_MAX_PHDRS ? info->dlpi_phnum : HT_MAX_PHDRS;
	memcpy(h.ph, info->dlpi_phdr, h.n * sizeof(Elf64_Phdr));
	uint8_t id[sizeof(maps->v[0].m.build_id)];
	int idlen = -1; /* not read yet */
	for (unsigned i = 0; i < h.n; i++) {
		const Elf64_Phdr *p = &h.ph[i];
		if (p->p_type != PT_LOAD || !(p->p_flags & PF_X) || p->p_memsz == 0)
			continue;
		uintptr_t lo = info->dlpi_addr + p->p_vaddr, hi = lo + p->p_memsz;
		for (const struct ht_mapping *c = ht_maps_find(maps, lo); c;
		     c = ht_maps_find(maps, lo)) {
			struct ht_mapping *x = &maps->v[c - maps->v];
			if (!x->bias_ok) {
				if (idlen < 0) {
					struct src s = {-1};
					idlen = elf_build_id(&s, &h, info->dlpi_addr, id,
					                     sizeof(id));
				}
				x->m.bias = info->dlpi_addr;
				x->bias_ok = true;
				if (idlen > 0) {
					memcpy(x->m.build_id, id, (size_t)idlen);
					x->m.build_id_len = (uint8_t)idlen;
				}
			}
			if (x->m.limit >= hi)
				break;
			lo = x->m.limit;
		}
	}
	return 0;
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
		maps->n++;
	}
	if (maps->main == nexec)
		maps->main = maps->n;
	ht_mem_free(lines);
	if (read_elf) {
		dl_iterate_phdr(loaded_cb, maps);
		for (size_t i = 0; i < maps->n; i++) {
			struct ht_mapping *x = &maps->v[i];
			if ((!x->bias_ok || !x->m.build_id_len) && x->path_ok && !x->deleted)
				read_elf_file(x);
		}
	}
	return 0;
}

int ht_maps_read(struct ht_maps *maps)
{
	memset(maps, 0, sizeof(*maps));
	/* thread-self: once the main thread has called pthread_exit, the
	 * process's /proc/self/maps reads empty (the leader has no mm left). */
	int fd = open_ro("/proc/thread-self/maps");
	if (fd < 0)
		fd = open_ro("/proc/self/maps");
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
	ssize_t el = readlink("/proc/thread-self/exe", exe, sizeof(exe) - 1);
	if (el < 0)
		el = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
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
