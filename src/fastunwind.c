/*
 * fastunwind.c - heaptap's own x86-64 stack walker. See fastunwind.h.
 *
 * It owns the rule cache, the .eh_frame_hdr/.eh_frame reader and the small
 * CFI interpreter behind it. The cache is one static array of 64-bit words,
 * direct-mapped by return address; each word holds the tag (the address's
 * high bits), the generation it was computed in and the rule, so a reader
 * loads one word and either has a whole entry or none (no torn entry, no
 * sequence counter, no lock). Writers are whoever missed: a relaxed store of
 * one word, the last writer of a slot wins, and a reader that loses a race
 * just misses. dlclose bumps the generation (loader.c), which retires every
 * entry at once. On a miss: _dl_find_object gives the module and its
 * PT_GNU_EH_FRAME segment; the sorted table there is searched for the FDE;
 * the CIE's and FDE's instructions are run up to the return address minus
 * one (the call instruction, not what follows it, whose rule may differ),
 * with the interpreter's state in the thread's ring scratch rather than on
 * the program's stack, so that a sample meeting a new return address costs
 * that stack no more than one whose rules are cached.
 * Every read of unwind data stays inside the module's segment that holds
 * .eh_frame_hdr (.eh_frame follows it there), every stack read inside the
 * thread's known stack or a page checked readable (unwind.c's probe), and
 * nothing is trusted beyond what it needs: a rule the walker does not know
 * is "unsupported", cached as such, and the stack goes to libunwind.
 */
#include "fastunwind.h"

#include "mem.h"
#include "stack.h"
#include "thread.h"
#include "unwind.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

/* ------------------------------------------------------- the rule cache */

/* 2^15 words, 256 KiB mapped at start-up, resident only as slots are
 * written: enough that the return addresses a program's allocating stacks
 * go through rarely collide (libunwind's per-thread cache starts at 2^14
 * slots of 16 bytes, per thread). Anonymous memory rather than .bss, whose
 * pages a MADV_DONTNEED could give back as file contents when heaptap is
 * linked into a program. */
#define RULE_BITS 15
#define RULES     (1u << RULE_BITS)

/* A word: bits 63..32 the tag, pc >> RULE_BITS (so pc < 2^47: above that
 * a rule is computed each time); 31..20 the generation; 19..15 where rbp
 * is saved, in 8-byte units below the CFA (0: unchanged); 14..3 the CFA
 * offset in 8-byte units; 2 the CFA is rbp-based; 1..0 the kind. The slot
 * index is the low RULE_BITS bits of pc xor the tag's, so tag and index
 * together give back the whole pc. 0 is an empty slot (kind 0). */
enum kind { K_EMPTY = 0, K_STEP = 1, K_LAST = 2, K_UNSUP = 3 };
#define GEN_BITS     12
#define GEN_SHIFT    20
#define TAG_SHIFT    32
#define CFA_MAX8     ((1u << 12) - 1)
#define SAVE_MAX8    ((1u << 5) - 1)
#define PC_CACHEABLE ((uintptr_t)1 << (TAG_SHIFT + RULE_BITS))

static _Atomic uint64_t *rules; /* NULL: no cache, every rule computed */
static _Atomic uint32_t generation;

/* What a walk looks rules up in: the table, or (none mapped) one empty
 * word that every address maps to and nothing is stored in. */
static const _Atomic uint64_t no_rule;

void ht_fastunwind_init(void)
{
	if (rules)
		return;
	void *m = mmap(NULL, RULES * sizeof(uint64_t), PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m != MAP_FAILED)
		rules = m;
}

struct rule {
	enum kind kind;
	bool cfa_rbp;      /* K_UNSUP: no unwind info covers the address */
	uint32_t cfa_off;  /* bytes above rsp or rbp */
	uint32_t rbp_save; /* rbp is at CFA - rbp_save; 0: unchanged */
};

static inline unsigned slot_of(uintptr_t pc)
{
	return (unsigned)((pc ^ (pc >> RULE_BITS)) & (RULES - 1));
}

static inline uint64_t key_of(uintptr_t pc, uint32_t gen)
{
	return ((uint64_t)(pc >> RULE_BITS) << TAG_SHIFT) |
	       ((uint64_t)(gen & ((1u << GEN_BITS) - 1)) << GEN_SHIFT);
}

static inline struct rule decode(uint64_t w)
{
	struct rule r = {
	        .kind = (enum kind)(w & 3),
	        .cfa_rbp = (w >> 2) & 1,
	        .cfa_off = (uint32_t)((w >> 3) & CFA_MAX8) * 8,
	        .rbp_save = (uint32_t)((w >> 15) & SAVE_MAX8) * 8,
	};
	return r;
}

/* The rule as one word's low bits, or false when it does not fit. */
static bool encode(const struct rule *r, uint64_t *bits)
{
	if (r->kind != K_STEP) {
		*bits = (uint64_t)r->kind | (uint64_t)r->cfa_rbp << 2;
		return true;
	}
	/* The walker's fast case relies on these for rsp-based rules: a
	 * positive multiple of 8, rbp's slot inside the frame. */
	if (r->cfa_off == 0 || r->cfa_off % 8 || r->cfa_off / 8 > CFA_MAX8 || r->rbp_save % 8 ||
	    r->rbp_save / 8 > SAVE_MAX8 || (!r->cfa_rbp && r->rbp_save > r->cfa_off))
		return false;
	*bits = K_STEP | (uint64_t)r->cfa_rbp << 2 | (uint64_t)(r->cfa_off / 8) << 3 |
	        (uint64_t)(r->rbp_save / 8) << 15;
	return true;
}

void ht_fastunwind_forget(void)
{
	uint32_t g = atomic_fetch_add(&generation, 1) + 1;
	/* Generations are GEN_BITS wide in a slot: when they wrap, an entry
	 * 2^GEN_BITS unloads old would look current again, so the whole table
	 * is dropped (the kernel gives back zero pages; a reader racing with
	 * it sees the old word or 0, both whole). */
	if ((g & ((1u << GEN_BITS) - 1)) == 0 && rules)
		madvise(rules, RULES * sizeof(uint64_t), MADV_DONTNEED);
}

size_t ht_fastunwind_resident(void)
{
	return rules ? ht_mem_resident_range(rules, RULES * sizeof(uint64_t)) : 0;
}

/* ------------------------------------------------ reading unwind data */

/* A cursor over unwind data: reads outside [p, end) set bad and give 0, so
 * the parsers check once at the end of a step rather than at every byte. */
struct rd {
	uintptr_t p, end;
	bool bad;
};

static uint64_t rd_bytes(struct rd *r, unsigned n)
{
	if (r->bad || r->end - r->p < n || r->p > r->end) {
		r->bad = true;
		return 0;
	}
	uint64_t v = 0;
	memcpy(&v, (const void *)r->p, n); /* little-endian */
	r->p += n;
	return v;
}

static uint64_t rd_uleb(struct rd *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b = (uint8_t)rd_bytes(r, 1);
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static int64_t rd_sleb(struct rd *r)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		uint8_t b = (uint8_t)rd_bytes(r, 1);
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			if (shift + 7 < 64 && (b & 0x40))
				v |= ~(uint64_t)0 << (shift + 7);
			return (int64_t)v;
		}
	}
	r->bad = true;
	return 0;
}

static void rd_skip(struct rd *r, uint64_t n)
{
	if (r->bad || n > r->end - r->p)
		r->bad = true;
	else
		r->p += n;
}

/* DW_EH_PE_* pointer encodings (LSB's "Exception Frame" section). */
#define PE_OMIT     0xff
#define PE_ABSPTR   0x00
#define PE_ULEB     0x01
#define PE_UDATA2   0x02
#define PE_UDATA4   0x03
#define PE_UDATA8   0x04
#define PE_SLEB     0x09
#define PE_SDATA2   0x0a
#define PE_SDATA4   0x0b
#define PE_SDATA8   0x0c
#define PE_PCREL    0x10
#define PE_DATAREL  0x30
#define PE_INDIRECT 0x80

/* The value part of an encoded pointer. */
static uint64_t rd_value(struct rd *r, uint8_t enc)
{
	switch (enc & 0x0f) {
	case PE_ABSPTR:
	case PE_UDATA8:
	case PE_SDATA8:
		return rd_bytes(r, 8);
	case PE_ULEB:
		return rd_uleb(r);
	case PE_UDATA2:
		return rd_bytes(r, 2);
	case PE_UDATA4:
		return rd_bytes(r, 4);
	case PE_SLEB:
		return (uint64_t)rd_sleb(r);
	case PE_SDATA2:
		return (uint64_t)(int64_t)(int16_t)rd_bytes(r, 2);
	case PE_SDATA4:
		return (uint64_t)(int64_t)(int32_t)rd_bytes(r, 4);
	default:
		r->bad = true;
		return 0;
	}
}

/* An encoded pointer: absolute, or relative to where it is stored (pcrel)
 * or to datarel (.eh_frame_hdr's own address, the only place it is used on
 * x86-64). Indirect pointers are only ever skipped (a personality). */
static uintptr_t rd_pointer(struct rd *r, uint8_t enc, uintptr_t datarel)
{
	uintptr_t at = r->p;
	uint64_t v = rd_value(r, enc);
	switch (enc & 0x70) {
	case 0:
		break;
	case PE_PCREL:
		v += at;
		break;
	case PE_DATAREL:
		if (!datarel)
			r->bad = true;
		v += datarel;
		break;
	default:
		r->bad = true;
	}
	return (uintptr_t)v;
}

/* The readable extent of the unwind data of the module _dl_find_object
 * found: the PT_LOAD segment that holds its .eh_frame_hdr (.eh_frame is
 * linked right after it, in the same read-only segment), from the program
 * headers the ELF header at the start of the mapping points to. When those
 * cannot be found or checked, the mapping's extent, which glibc reports
 * from the same program headers (holes between segments included, hence
 * the narrower segment when possible). */
static void data_extent(const struct dl_find_object *o, uintptr_t *lo, uintptr_t *hi)
{
	uintptr_t start = (uintptr_t)o->dlfo_map_start, end = (uintptr_t)o->dlfo_map_end;
	uintptr_t hdr = (uintptr_t)o->dlfo_eh_frame;
	*lo = start;
	*hi = end;
	/* The first page of the mapping is the first PT_LOAD segment's, which
	 * maps the file from offset 0 in every linker's default layout: the
	 * ELF header and, within that page, the program headers. Anything
	 * else fails the checks below and the whole mapping is used. */
	const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)start;
	if ((start & 4095) || end - start < sizeof(*eh) || !o->dlfo_link_map)
		return;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff > 4096 ||
	    (uint64_t)eh->e_phnum * sizeof(ElfW(Phdr)) > 4096 - eh->e_phoff)
		return;
	const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((uintptr_t)eh + eh->e_phoff);
	uintptr_t base = o->dlfo_link_map->l_addr;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		uintptr_t s = base + ph[i].p_vaddr, e = s + ph[i].p_filesz;
		if (hdr >= s && hdr < e && s >= start && e <= end) {
			*lo = s;
			*hi = e;
			return;
		}
	}
}

/* ------------------------------------------------------ CIE and FDE */

struct cie {
	uint64_t code_align;
	int64_t data_align;
	uint8_t fde_enc;
	bool has_aug; /* 'z': FDEs carry augmentation data to skip */
	uintptr_t ins, ins_end;
};

/* Parse the CIE at cie_at. -EOPNOTSUPP for what the walker leaves to
 * libunwind: signal frames ('S'), unknown augmentations, a return address
 * column other than 16. */
static int parse_cie(uintptr_t cie_at, uintptr_t lo, uintptr_t hi, struct cie *c)
{
	struct rd r = {cie_at, hi, false};
	if (cie_at < lo)
		return -EFAULT;
	uint64_t len = rd_bytes(&r, 4);
	if (len == 0xffffffffu)
		len = rd_bytes(&r, 8);
	if (r.bad || len > r.end - r.p)
		return -EFAULT;
	r.end = r.p + len;
	if (rd_bytes(&r, 4) != 0) /* a CIE's id in .eh_frame */
		return -EFAULT;
	uint8_t version = (uint8_t)rd_bytes(&r, 1);
	if (version != 1 && version != 3)
		return -EOPNOTSUPP;
	char aug[8];
	unsigned na = 0;
	for (;;) {
		char ch = (char)rd_bytes(&r, 1);
		if (r.bad)
			return -EFAULT;
		if (!ch)
			break;
		if (na + 1 >= sizeof(aug))
			return -EOPNOTSUPP;
		aug[na++] = ch;
	}
	aug[na] = '\0';
	c->code_align = rd_uleb(&r);
	c->data_align = rd_sleb(&r);
	uint64_t ra_reg = version == 1 ? rd_bytes(&r, 1) : rd_uleb(&r);
	if (r.bad)
		return -EFAULT;
	if (ra_reg != 16 || c->code_align == 0)
		return -EOPNOTSUPP;
	c->fde_enc = PE_ABSPTR;
	c->has_aug = false;
	if (na) {
		if (aug[0] != 'z')
			return -EOPNOTSUPP; /* "eh" and other pre-'z' forms */
		c->has_aug = true;
		uint64_t alen = rd_uleb(&r);
		if (r.bad || alen > r.end - r.p)
			return -EFAULT;
		struct rd a = {r.p, r.p + alen, false};
		for (unsigned i = 1; i < na; i++) {
			switch (aug[i]) {
			case 'R':
				c->fde_enc = (uint8_t)rd_bytes(&a, 1);
				break;
			case 'L':
				rd_bytes(&a, 1);
				break;
			case 'P': {
				uint8_t penc = (uint8_t)rd_bytes(&a, 1);
				rd_value(&a, penc);
				break;
			}
			case 'S': /* a signal frame: the caller's registers are in a
			           * sigcontext, not in CFA-relative slots */
			default:
				return -EOPNOTSUPP;
			}
		}
		if (a.bad)
			return -EFAULT;
		r.p += alen;
	}
	c->ins = r.p;
	c->ins_end = r.end;
	return 0;
}

/* ---------------------------------------------------- CFI interpreter */

/* DWARF register numbers on x86-64 (psABI, figure 3.36). */
#define REG_RBP 6
#define REG_RSP 7
#define REG_RA  16

/* What a row says about one register the walker needs. OTHER: something it
 * does not evaluate (another register, an expression, a value rule). */
enum reg_rule { R_SAME, R_OFFSET, R_UNDEF, R_OTHER };

struct row {
	int64_t cfa_off;
	int cfa_reg; /* -1: an expression */
	uint8_t rbp, ra;
	int64_t rbp_off, ra_off;
};

#define STATE_DEPTH 8
#define MAX_OPS     4096

struct interp {
	const struct cie *cie;
	struct row row, init;
	struct row saved[STATE_DEPTH];
	unsigned nsaved;
	uintptr_t loc, target;
	uint8_t fde_enc;
};

static void set_reg(struct row *w, uint64_t reg, enum reg_rule rule, int64_t off)
{
	if (reg == REG_RBP) {
		w->rbp = (uint8_t)rule;
		w->rbp_off = off;
	} else if (reg == REG_RA) {
		w->ra = (uint8_t)rule;
		w->ra_off = off;
	}
	/* Other registers are never needed: a frame whose CFA is based on one
	 * of them is unsupported. */
}

static void restore_reg(struct interp *in, uint64_t reg)
{
	if (reg == REG_RBP) {
		in->row.rbp = in->init.rbp;
		in->row.rbp_off = in->init.rbp_off;
	} else if (reg == REG_RA) {
		in->row.ra = in->init.ra;
		in->row.ra_off = in->init.ra_off;
	}
}

/* Advance the location; true when it passed the target (the row in effect
 * there is the current one). */
static bool advance(struct interp *in, uint64_t delta)
{
	uint64_t d = delta * in->cie->code_align;
	if (d > in->target - in->loc)
		return true;
	in->loc += d;
	return false;
}

/* Run instructions [p, end) until they end or the location passes the
 * target. 0, or -EOPNOTSUPP / -EFAULT. */
static int run(struct interp *in, uintptr_t p, uintptr_t end, bool in_cie)
{
	struct rd r = {p, end, false};
	struct row *w = &in->row;
	int64_t da = in->cie->data_align;
	for (unsigned ops = 0; r.p < r.end; ops++) {
		if (ops >= MAX_OPS)
			return -EOPNOTSUPP;
		uint8_t op = (uint8_t)rd_bytes(&r, 1);
		uint8_t low = op & 0x3f;
		uint64_t reg, len;
		switch (op >> 6) {
		case 1: /* DW_CFA_advance_loc */
			if (advance(in, low))
				return 0;
			continue;
		case 2: /* DW_CFA_offset */
			set_reg(w, low, R_OFFSET, (int64_t)rd_uleb(&r) * da);
			continue;
		case 3: /* DW_CFA_restore */
			if (in_cie)
				return -EOPNOTSUPP;
			restore_reg(in, low);
			continue;
		}
		switch (op) {
		case 0x00: /* DW_CFA_nop */
			break;
		case 0x01: { /* DW_CFA_set_loc */
			uintptr_t to = rd_pointer(&r, in->fde_enc, 0);
			if (r.bad || to < in->loc)
				return -EFAULT;
			if (to > in->target)
				return 0;
			in->loc = to;
			break;
		}
		case 0x02: /* DW_CFA_advance_loc1 */
			if (advance(in, rd_bytes(&r, 1)))
				return r.bad ? -EFAULT : 0;
			break;
		case 0x03: /* DW_CFA_advance_loc2 */
			if (advance(in, rd_bytes(&r, 2)))
				return r.bad ? -EFAULT : 0;
			break;
		case 0x04: /* DW_CFA_advance_loc4 */
			if (advance(in, rd_bytes(&r, 4)))
				return r.bad ? -EFAULT : 0;
			break;
		case 0x05: /* DW_CFA_offset_extended */
			reg = rd_uleb(&r);
			set_reg(w, reg, R_OFFSET, (int64_t)rd_uleb(&r) * da);
			break;
		case 0x06: /* DW_CFA_restore_extended */
			reg = rd_uleb(&r);
			if (in_cie)
				return -EOPNOTSUPP;
			restore_reg(in, reg);
			break;
		case 0x07: /* DW_CFA_undefined */
			set_reg(w, rd_uleb(&r), R_UNDEF, 0);
			break;
		case 0x08: /* DW_CFA_same_value */
			set_reg(w, rd_uleb(&r), R_SAME, 0);
			break;
		case 0x09: /* DW_CFA_register: the value is in another register */
			reg = rd_uleb(&r);
			rd_uleb(&r);
			set_reg(w, reg, R_OTHER, 0);
			break;
		case 0x0a: /* DW_CFA_remember_state */
			if (in->nsaved >= STATE_DEPTH)
				return -EOPNOTSUPP;
			in->saved[in->nsaved++] = *w;
			break;
		case 0x0b: /* DW_CFA_restore_state */
			/* The CFA rule too: compilers bracket an epilogue (CFA
			 * rsp+8 after the pops) with remember/restore_state and
			 * expect the body's CFA back after it. */
			if (!in->nsaved)
				return -EFAULT;
			*w = in->saved[--in->nsaved];
			break;
		case 0x0c: /* DW_CFA_def_cfa */
			w->cfa_reg = (int)rd_uleb(&r);
			w->cfa_off = (int64_t)rd_uleb(&r);
			break;
		case 0x0d: /* DW_CFA_def_cfa_register */
			if (w->cfa_reg < 0)
				return -EOPNOTSUPP;
			w->cfa_reg = (int)rd_uleb(&r);
			break;
		case 0x0e: /* DW_CFA_def_cfa_offset */
			if (w->cfa_reg < 0)
				return -EOPNOTSUPP;
			w->cfa_off = (int64_t)rd_uleb(&r);
			break;
		case 0x0f: /* DW_CFA_def_cfa_expression: DRAP, PLT entries */
			len = rd_uleb(&r);
			rd_skip(&r, len);
			w->cfa_reg = -1;
			break;
		case 0x10: /* DW_CFA_expression */
		case 0x16: /* DW_CFA_val_expression */
			reg = rd_uleb(&r);
			len = rd_uleb(&r);
			rd_skip(&r, len);
			set_reg(w, reg, R_OTHER, 0);
			break;
		case 0x11: /* DW_CFA_offset_extended_sf */
			reg = rd_uleb(&r);
			set_reg(w, reg, R_OFFSET, rd_sleb(&r) * da);
			break;
		case 0x12: /* DW_CFA_def_cfa_sf */
			w->cfa_reg = (int)rd_uleb(&r);
			w->cfa_off = rd_sleb(&r) * da;
			break;
		case 0x13: /* DW_CFA_def_cfa_offset_sf */
			if (w->cfa_reg < 0)
				return -EOPNOTSUPP;
			w->cfa_off = rd_sleb(&r) * da;
			break;
		case 0x14: /* DW_CFA_val_offset */
			reg = rd_uleb(&r);
			rd_uleb(&r);
			set_reg(w, reg, R_OTHER, 0);
			break;
		case 0x15: /* DW_CFA_val_offset_sf */
			reg = rd_uleb(&r);
			rd_sleb(&r);
			set_reg(w, reg, R_OTHER, 0);
			break;
		case 0x2e: /* DW_CFA_GNU_args_size: only matters to landing pads */
			rd_uleb(&r);
			break;
		case 0x2f: /* DW_CFA_GNU_negative_offset_extended */
			reg = rd_uleb(&r);
			set_reg(w, reg, R_OFFSET, -(int64_t)rd_uleb(&r) * da);
			break;
		default:
			return -EOPNOTSUPP;
		}
		if (r.bad)
			return -EFAULT;
	}
	return r.bad ? -EFAULT : 0;
}

/* What computing one rule needs, about 600 bytes: kept off the program's
 * stack (a rule is computed inside a sample, on whatever stack the
 * allocation was made on), in a per-thread area (work_of). */
struct work {
	struct dl_find_object o;
	struct cie c;
	struct interp in;
	struct row w;
};

/* The row in effect at target, from the FDE at fde_at. */
static int fde_row(uintptr_t fde_at, uintptr_t lo, uintptr_t hi, uintptr_t target, struct work *wk)
{
	struct rd r = {fde_at, hi, false};
	if (fde_at < lo)
		return -EFAULT;
	uint64_t len = rd_bytes(&r, 4);
	if (len == 0xffffffffu)
		len = rd_bytes(&r, 8);
	if (r.bad || len == 0 || len > r.end - r.p)
		return -EFAULT;
	r.end = r.p + len;
	uintptr_t id_at = r.p;
	uint64_t cie_off = rd_bytes(&r, 4);
	if (r.bad || cie_off == 0 || cie_off > id_at)
		return -EFAULT; /* 0 would make it a CIE */
	struct cie *c = &wk->c;
	int e = parse_cie(id_at - cie_off, lo, hi, c);
	if (e)
		return e;
	uintptr_t begin = rd_pointer(&r, c->fde_enc, 0);
	uintptr_t range = (uintptr_t)rd_value(&r, c->fde_enc & 0x0f);
	if (c->has_aug)
		rd_skip(&r, rd_uleb(&r));
	if (r.bad)
		return -EFAULT;
	if (target < begin || target - begin >= range)
		return -ENOENT; /* the table's nearest FDE does not cover it */
	/* Field by field: a compound literal could be built on the stack
	 * first. init and saved are only read once set. */
	struct interp *in = &wk->in;
	in->cie = c;
	in->row = (struct row){.cfa_reg = -1, .rbp = R_SAME, .ra = R_OTHER};
	in->nsaved = 0;
	in->loc = begin;
	in->target = target;
	in->fde_enc = c->fde_enc;
	if ((e = run(in, c->ins, c->ins_end, true)) != 0)
		return e;
	in->init = in->row;
	in->nsaved = 0;
	if ((e = run(in, r.p, r.end, false)) != 0)
		return e;
	wk->w = in->row;
	return 0;
}

/* The FDE for target in the sorted table of .eh_frame_hdr. */
static int find_fde(uintptr_t hdr, uintptr_t lo, uintptr_t hi, uintptr_t target, uintptr_t *fde)
{
	struct rd r = {hdr, hi, false};
	if (hdr < lo)
		return -EFAULT;
	uint8_t version = (uint8_t)rd_bytes(&r, 1);
	uint8_t ptr_enc = (uint8_t)rd_bytes(&r, 1);
	uint8_t count_enc = (uint8_t)rd_bytes(&r, 1);
	uint8_t table_enc = (uint8_t)rd_bytes(&r, 1);
	if (r.bad || version != 1 || ptr_enc == PE_OMIT || count_enc == PE_OMIT ||
	    (ptr_enc & PE_INDIRECT) || (count_enc & PE_INDIRECT))
		return -EOPNOTSUPP;
	rd_pointer(&r, ptr_enc, hdr); /* .eh_frame itself: not needed */
	uint64_t count = rd_pointer(&r, count_enc, hdr);
	/* Every linker writes the table as pairs of 4-byte offsets from the
	 * header (datarel | sdata4); anything else is left to libunwind. */
	if (r.bad || table_enc != (PE_DATAREL | PE_SDATA4) || count == 0 ||
	    count > (r.end - r.p) / 8)
		return -EOPNOTSUPP;
	const unsigned char *table = (const unsigned char *)r.p;
	int64_t want = (int64_t)(target - hdr);
	/* The last entry whose start is at or below the target. */
	uint64_t a = 0, b = count;
	while (b - a > 1) {
		uint64_t m = a + (b - a) / 2;
		int32_t start;
		memcpy(&start, table + m * 8, 4);
		if ((int64_t)start <= want)
			a = m;
		else
			b = m;
	}
	int32_t start, off;
	memcpy(&start, table + a * 8, 4);
	memcpy(&off, table + a * 8 + 4, 4);
	if ((int64_t)start > want)
		return -ENOENT;
	*fde = hdr + (uintptr_t)(intptr_t)off;
	return 0;
}

/* The rule for the frame whose return address is pc: -ENOENT when no
 * module holds pc (nothing to cache: a library may be loaded there later,
 * which bumps no generation), else 0 with r->kind K_UNSUP for what the
 * walker does not handle. */
static int compute(uintptr_t pc, struct rule *r, struct work *wk)
{
	/* The call instruction's row, not the next instruction's: a call that
	 * ends a function (noreturn) returns to the next function's start. */
	uintptr_t target = pc - 1;
	struct dl_find_object *o = &wk->o;
	r->kind = K_UNSUP;
	r->cfa_rbp = false;
	r->cfa_off = 0;
	r->rbp_save = 0;
	/* glibc 2.35+: lock-free and async-signal-safe once ld.so has set it
	 * up. glibc 2.36's manual (manual/dynlink.texi) marks _dl_find_object
	 * "MT-Safe | AS-Safe | AC-Safe"; elf/dl-find_object.c keeps two copies
	 * of its table, switched by a version counter read like a seqlock, "so
	 * that a signal handler can still use this data even if dlopen or
	 * dlclose modify the other copy"; its locking fallback runs only before
	 * that set-up, which is over before any constructor (and so before any
	 * malloc heaptap samples). */
	if (_dl_find_object((void *)target, o) != 0)
		return -ENOENT;
	if (!o->dlfo_eh_frame) {
		r->cfa_rbp = true;
		return 0;
	}
	uintptr_t lo, hi, fde;
	data_extent(o, &lo, &hi);
	int e = find_fde((uintptr_t)o->dlfo_eh_frame, lo, hi, target, &fde);
	const struct row *w = &wk->w;
	if (e == 0)
		e = fde_row(fde, lo, hi, target, wk);
	if (e) {
		r->cfa_rbp = e == -ENOENT;
		return 0;
	}
	if (w->ra == R_UNDEF || w->rbp == R_UNDEF) {
		/* The outermost frame: _start, clone3's child (cfi_undefined rip).
		 * libunwind ends a stack at an undefined rbp too (the psABI's
		 * other end-of-stack mark), and so does this walker, to give the
		 * same stacks. */
		r->kind = K_LAST;
		return 0;
	}
	/* Offsets in whole words: the walker reads aligned words only. */
	if ((w->cfa_reg != REG_RSP && w->cfa_reg != REG_RBP) || w->cfa_off <= 0 ||
	    w->cfa_off > INT32_MAX || (w->cfa_off & 7) || w->ra != R_OFFSET || w->ra_off != -8)
		return 0;
	if (w->rbp == R_OFFSET) {
		if (w->rbp_off >= 0 || w->rbp_off < INT32_MIN || (w->rbp_off & 7))
			return 0;
		r->rbp_save = (uint32_t)-w->rbp_off;
	} else if (w->rbp != R_SAME) {
		return 0;
	}
	r->kind = K_STEP;
	r->cfa_rbp = w->cfa_reg == REG_RBP;
	r->cfa_off = (uint32_t)w->cfa_off;
	return 0;
}

/* The slot's word when it holds pc's rule of generation genbits (already
 * masked), else a word of kind K_EMPTY. A pc at or above 2^47 never matches
 * (its tag does not fit the 44 bits compared). tbl and mask: rules and
 * RULES - 1, or &no_rule and 0. */
static inline uint64_t cached(const _Atomic uint64_t *tbl, unsigned mask, uintptr_t pc,
                              uint64_t genbits)
{
	uint64_t w = atomic_load_explicit(&tbl[slot_of(pc) & mask], memory_order_relaxed);
	uint64_t want = ((uint64_t)(pc >> RULE_BITS) << GEN_BITS) | genbits;
	return (w >> GEN_SHIFT) == want ? w : 0;
}

_Static_assert(sizeof(struct work) <= HT_RING_SCRATCH - HT_RING_WORK_AT,
               "the work area fits the ring's scratch");

/* The thread's work area: in its ring's scratch, past the frames (ring.h),
 * NULL when it has no ring yet. */
static inline struct work *work_of(const struct ht_thread *th)
{
	if (!th || !th->ring.scratch)
		return NULL;
	return (struct work *)((char *)th->ring.scratch + HT_RING_WORK_AT);
}

/* Without one (a thread with no ring yet: the creating side of
 * pthread_create at the default rate, a capture outside a sample), one
 * area shared by all, taken if free; else on this stack, in a frame of its
 * own that the usual path never has. Misses are rare (the rule cache is
 * the process's), so the shared area is nearly always free. An area left
 * taken for good (a siglongjmp out of a handler that interrupted a
 * computation) only sends every later computation to the stack; one held
 * by another thread at a fork is free again in the child
 * (ht_fastunwind_atfork_child). */
static struct work shared_work;
static atomic_bool shared_taken;

void ht_fastunwind_atfork_child(void)
{
	atomic_store_explicit(&shared_taken, false, memory_order_relaxed);
}

static __attribute__((noinline)) int compute_here(uintptr_t pc, struct rule *r)
{
	struct work wk;
	return compute(pc, r, &wk);
}

static int compute_shared(uintptr_t pc, struct rule *r)
{
	if (atomic_exchange_explicit(&shared_taken, true, memory_order_acquire))
		return compute_here(pc, r);
	int e = compute(pc, r, &shared_work);
	atomic_store_explicit(&shared_taken, false, memory_order_release);
	return e;
}

/* A miss: compute the rule, cache it if it fits a word. */
static __attribute__((noinline)) int lookup_slow(uintptr_t pc, uint32_t gen, struct rule *r,
                                                 struct work *wk)
{
	int e = wk ? compute(pc, r, wk) : compute_shared(pc, r);
	if (e)
		return e;
	uint64_t bits;
	_Atomic uint64_t *tbl = rules;
	if (tbl && pc < PC_CACHEABLE && encode(r, &bits))
		atomic_store_explicit(&tbl[slot_of(pc)], key_of(pc, gen) | bits,
		                      memory_order_relaxed);
	return 0;
}

static int lookup(uintptr_t pc, uint32_t gen, struct rule *r)
{
	const _Atomic uint64_t *tbl = rules;
	uint64_t w =
	        cached(tbl ? tbl : &no_rule, tbl ? RULES - 1 : 0, pc, gen & ((1u << GEN_BITS) - 1));
	if (w & 3) {
		*r = decode(w);
		return 0;
	}
	return lookup_slow(pc, gen, r, NULL);
}

int ht_fastunwind_rule(uintptr_t pc, int *cfa_rbp, int32_t *cfa_off, int32_t *rbp_save)
{
	struct rule r;
	int e = lookup(pc, atomic_load_explicit(&generation, memory_order_relaxed), &r);
	if (e)
		return e;
	if (r.kind == K_LAST)
		return 1;
	if (r.kind != K_STEP)
		return -EOPNOTSUPP;
	*cfa_rbp = r.cfa_rbp;
	*cfa_off = (int32_t)r.cfa_off;
	*rbp_save = (int32_t)r.rbp_save;
	return 0;
}

/* ------------------------------------------------------------ the walk */

/* Frames whose return address lies in [own_min, own_min + own_span) may
 * be heaptap's own, which unwind.c leaves out of a stack. The walker says
 * how many leading frames of a stack lie outside (*plain), remembered with
 * the thread's previous stack, so that unwind.c does not scan a stack that
 * only repeats. Until unwind.c says where its text is, any frame may be. */
static uintptr_t own_min, own_span = UINTPTR_MAX;

void ht_fastunwind_note_own(uintptr_t lo, uintptr_t hi)
{
	own_min = lo;
	own_span = hi - lo;
}

/* Read the 8-byte aligned stack word at a (so never across a page) outside
 * the thread's known stack: the page's readability from unwind.c's probe
 * (remembered there), the last page checked remembered in *page. */
static __attribute__((noinline)) bool read_checked(uintptr_t *page, uintptr_t a, uintptr_t *out)
{
	if (a >> 12 != *page) {
		if (a < 4096 || ht_unwind_readable(a) != 0)
			return false;
		*page = a >> 12;
	}
	*out = *(const uintptr_t *)a;
	return true;
}

/* A rule outside the cache's fast case: a miss, the outermost frame, one
 * the walker leaves to libunwind, one too large for a slot. Gives the next
 * CFA, rbp's slot and whether the CFA is rbp's; or 1 when the stack ends
 * here by its rule, 2 when it ends because rbp is 0; or -EOPNOTSUPP,
 * -EFAULT. */
static __attribute__((noinline)) int step_slow(uintptr_t pc, uint64_t w, uint32_t gen, uintptr_t sp,
                                               uintptr_t rbp, uintptr_t *cfa, uintptr_t *save,
                                               bool *cfa_rbp, struct work *wk)
{
	struct rule r;
	if (w & 3)
		r = decode(w);
	else if (lookup_slow(pc, gen, &r, wk) != 0)
		return -EOPNOTSUPP;
	if (r.kind == K_LAST)
		return 1;
	/* Code with no unwind info and rbp 0: the outermost frame by the
	 * psABI's convention (ld.so's _dl_start_user under the program's
	 * constructors). libunwind ends the stack there too; with any other
	 * rbp it would guess a frame, so that stack is its own. */
	if (r.kind == K_UNSUP && r.cfa_rbp && rbp == 0)
		return 2;
	if (r.kind != K_STEP)
		return -EOPNOTSUPP;
	*cfa = (r.cfa_rbp ? rbp : sp) + r.cfa_off;
	*save = r.rbp_save;
	*cfa_rbp = r.cfa_rbp;
	/* Each frame lies above the last (no loops, nothing below the stack
	 * pointer), aligned; rbp's slot lies in this frame. */
	if (*cfa <= sp || (*cfa & 7) || *save > *cfa - sp)
		return -EFAULT;
	return 0;
}

/* ------------------------------------------------ the previous stack */

/* Each thread keeps its last stack, with what walking it read: a capture
 * that reaches one of its frames in the same state (return address, sp,
 * and rbp where the rest of the walk depends on it) re-reads the words the
 * walk read above that frame, and when all are unchanged the rest of the
 * stack is the same: the walk is a function of the state, the rules (same
 * generation) and those words. The re-reads are independent loads, unlike
 * a walk, where each step waits for the last. Two copies: the next stack
 * is written into the other while this one is still matched against. */
#define PREFIX_FRAMES 80

/* A frame's own step: its CFA is rbp's; it leaves rbp as it found it (no
 * slot; set too on a last frame, never stepped); the walk from it on
 * reads rbp (mark_dep). */
enum { PF_CFA_RBP = 1, PF_SAME_RBP = 2, PF_DEP = 4 };

/* One frame, with what the step into it (from the frame below) read: its
 * return address at sp - 8 and the word at in_addr, holding in_chk: rbp's
 * slot; with no slot, the return address again (sp - 8, pc), so that
 * re-reading is the same for every frame. Frame 0's in_* are not used.
 * One record per frame, the second address whole: re-reading a stack is
 * one stream through one pointer, two loads and a compare per word. */
struct pframe {
	uintptr_t pc, sp, rbp, in_addr, in_chk;
	uint8_t flags;
};

struct pstack {
	uint32_t n;      /* frames */
	uint32_t gen;    /* rule generation they were walked with */
	bool valid;      /* false while written (a handler may leave it half done) */
	bool ended;      /* the stack ended after frame n-1; else it was cut */
	uint32_t own_at; /* the first frame that may be heaptap's own (first_own), else n */
	uintptr_t top;   /* every word read lies below it */
	struct pframe f[PREFIX_FRAMES];
};

/* The first of f[from, to) that may be heaptap's own, else to. */
static unsigned first_own(const struct pframe *f, unsigned from, unsigned to)
{
	while (from < to && f[from].pc - 1 - own_min >= own_span)
		from++;
	return from;
}

struct ht_fu_prefix {
	unsigned cur;
	struct pstack s[2];
};

static bool prefix_on = true;

void ht_fastunwind_use_prefix(bool on)
{
	prefix_on = on;
}

static struct ht_fu_prefix *prefix_of(struct ht_thread *th)
{
	if (!th || !prefix_on)
		return NULL;
	if (__builtin_expect(th->unwind_prefix != NULL, 1))
		return th->unwind_prefix;
	/* From a thread's second stack on: a thread that samples once (most
	 * at the default rate) does not pay for it. */
	if (!atomic_load_explicit(&th->unwind_fast, memory_order_relaxed))
		return NULL;
	struct ht_fu_prefix *p = ht_mem_alloc(sizeof(*p));
	if (p) {
		p->cur = 0;
		p->s[0].valid = p->s[1].valid = false;
		th->unwind_prefix = p;
	}
	return p;
}

void ht_fastunwind_thread_done(struct ht_thread *th)
{
	ht_mem_free(th->unwind_prefix);
	th->unwind_prefix = NULL;
}

/* PF_DEP of frames [from, to), given that of frame `to` (dep_to): frame k's
 * walk depends on its rbp when its CFA is rbp's, or when it passes rbp on
 * unchanged to a frame that depends on it. */
static void mark_dep(struct pstack *ps, unsigned from, unsigned to, bool dep_to)
{
	bool dep = dep_to;
	for (unsigned k = to; k-- > from;) {
		uint8_t fl = ps->f[k].flags;
		dep = (fl & PF_CFA_RBP) || ((fl & PF_SAME_RBP) && dep);
		ps->f[k].flags = (uint8_t)((fl & ~PF_DEP) | (dep ? PF_DEP : 0));
	}
}

/* The walk has reached frame i of out in the state of old frame c. Re-read
 * what the old walk read from frame c on, as far as this stack needs
 * (n_max frames in all); when nothing changed, the old frames are in out
 * and the new depth is returned, else -1 (and out past i is the walk's to
 * overwrite). */
static inline __attribute__((always_inline)) int reuse(const struct pstack *old, unsigned c,
                                                       uintptr_t *out, unsigned i, unsigned n_max)
{
	unsigned need = n_max - i, avail = old->n - c;
	if (avail < need && !old->ended)
		return -1;
	unsigned take = avail < need ? avail : need;
	/* The steps into frames c+1 .. c+take-1: independent loads, all or
	 * nothing; each frame is copied out on the way (a separate memcpy was
	 * a libc call for a few words). */
	const struct pframe *f = old->f + c + 1, *end = old->f + c + take;
	uintptr_t diff = 0, *to = out + i + 1;
	for (; f < end; f++, to++) {
		uintptr_t p = f->pc, sp = f->sp;
		diff |= (*(const uintptr_t *)(sp - 8) ^ p) |
		        (*(const uintptr_t *)f->in_addr ^ f->in_chk);
		*to = p;
	}
	return diff ? -1 : (int)(i + take);
}

/* Publish ps as the thread's previous stack: frames [0, fresh) were walked
 * now, the rest copied. */
static void publish(struct ht_fu_prefix *p, struct pstack *ps, unsigned fresh, bool dep_next)
{
	mark_dep(ps, 0, fresh, dep_next);
	ps->top = ps->f[ps->n - 1].sp;
	/* The compiler must not sink the stores above below this one: a
	 * signal handler's capture in between is not possible (the thread is
	 * busy), but a siglongjmp out of one leaves ps unpublished. */
	atomic_signal_fence(memory_order_release);
	ps->valid = true;
	p->cur = (unsigned)(ps - p->s);
}

/* Keep a finished walk of n frames as the thread's previous stack (when it
 * fits): its last frame was not stepped, so it has no words to re-check.
 * ended: the stack ended there (rather than at the frame budget). Returns
 * the leading frames that are surely not heaptap's (*plain of the walk). */
static unsigned keep_walk(struct ht_fu_prefix *pf, struct pstack *ps, unsigned n, uint32_t gen,
                          bool ended, bool dep_end)
{
	if (!ps || n > PREFIX_FRAMES)
		return 0;
	ps->f[n - 1].flags = PF_SAME_RBP;
	ps->n = n;
	ps->gen = gen;
	ps->ended = ended;
	ps->own_at = first_own(ps->f, 0, n);
	publish(pf, ps, n, dep_end);
	return ps->own_at;
}

/* After reuse(): the thread's previous stack becomes this one, frames
 * [0, i) of ps walked now, then old's from c on, d frames in all. Returns
 * the leading frames that are surely not heaptap's (*plain of the walk). */
static unsigned keep_prefix(struct ht_fu_prefix *pf, const struct pstack *old, unsigned c,
                            struct pstack *ps, unsigned i, unsigned d, uint32_t gen)
{
	unsigned tail = d - i, at;
	if (i == c && tail == old->n - c) {
		/* The same stack from frame c on, at the same depth: old stays,
		 * with frames [0, c) rewritten if there are any. */
		struct pstack *o = &pf->s[pf->cur];
		if (!c)
			return o->own_at;
		o->valid = false;
		atomic_signal_fence(memory_order_release);
		/* Frames [0, c) and the step into c, walked now. */
		memcpy(o->f, ps->f, c * sizeof(struct pframe));
		o->f[c].in_chk = ps->f[c].in_chk;
		o->f[c].in_addr = ps->f[c].in_addr;
		/* The first own frame: among the new ones, else old's if it lay
		 * past them, else looked for in what stayed. */
		at = first_own(o->f, 0, c);
		if (at == c)
			at = o->own_at >= c ? o->own_at : first_own(o->f, c, o->n);
		o->own_at = at;
		publish(pf, o, c, o->f[c].flags & PF_DEP);
		return at;
	}
	if (i + tail > PREFIX_FRAMES)
		return 0;
	/* Frame i is old's frame c, but for the step into it, walked now. */
	struct pframe *fi = &ps->f[i];
	const struct pframe *fc = &old->f[c];
	fi->pc = fc->pc;
	fi->sp = fc->sp;
	fi->rbp = fc->rbp;
	fi->flags = fc->flags;
	memcpy(fi + 1, fc + 1, (tail - 1) * sizeof(struct pframe));
	ps->n = d;
	ps->gen = gen;
	/* Cut short of old's end: the last frame kept was not stepped. */
	ps->ended = tail == old->n - c && old->ended;
	if (!ps->ended)
		ps->f[d - 1].flags = (uint8_t)((ps->f[d - 1].flags & PF_CFA_RBP) | PF_SAME_RBP);
	at = first_own(ps->f, 0, i);
	if (at == i)
		at = old->own_at >= c ? i + (old->own_at - c < tail ? old->own_at - c : tail)
		                      : first_own(ps->f, i, d);
	ps->own_at = at;
	publish(pf, ps, i, fc->flags & PF_DEP);
	return at;
}

/* Where the walk stands: the frame's return address, stack pointer and
 * rbp; the end of the known stack range; the last page checked outside
 * it; the rule generation. */
struct at {
	uintptr_t pc, sp, rbp, hi, page;
	uint32_t gen;
	struct work *wk; /* for a rule not cached (work_of) */
};

/* The walk from frame 0 on (ht_fastunwind_walk), matched against the
 * previous stack old when there is one; this one is written into pf's
 * other copy (ps) while it stays in the known stack range. Apart from the
 * repeated stacks handled before it, so that their path carries none of
 * this one's registers. */
static __attribute__((noinline)) int walk_on(uintptr_t *out, unsigned n_max,
                                             struct ht_fu_prefix *pf, const struct pstack *old,
                                             const struct at *st, unsigned *plain)
{
	uintptr_t pc = st->pc, sp = st->sp, rbp = st->rbp, hi = st->hi, page = st->page;
	uint32_t gen = st->gen;
	struct pstack *ps = NULL;
	if (pf) {
		ps = &pf->s[!pf->cur];
		ps->valid = false;
	}
	uint64_t genbits = gen & ((1u << GEN_BITS) - 1);
	const _Atomic uint64_t *tbl = rules ? rules : &no_rule;
	unsigned mask = rules ? RULES - 1 : 0;
	unsigned c = 0, n = 0;
	bool dep_end = false;
	for (;;) {
		if (ps) {
			if (n < PREFIX_FRAMES) {
				ps->f[n].pc = pc;
				ps->f[n].sp = sp;
				ps->f[n].rbp = rbp;
			} else {
				ps = NULL;
			}
		}
		out[n++] = pc;
		if (n >= n_max)
			break;
		if (old) {
			/* Both stacks' sp only grow: merge. */
			while (c < old->n && old->f[c].sp < sp)
				c++;
			if (c < old->n && old->f[c].sp == sp && old->f[c].pc == pc &&
			    (!(old->f[c].flags & PF_DEP) || old->f[c].rbp == rbp)) {
				int d = reuse(old, c, out, n - 1, n_max);
				if (d >= 0) {
					if (ps)
						*plain = keep_prefix(pf, old, c, ps, n - 1,
						                     (unsigned)d, gen);
					return d;
				}
				old = NULL; /* the stack above changed: walk on */
			}
		}
		uint64_t w = cached(tbl, mask, pc, genbits);
		uintptr_t cfa, save;
		bool cfa_rbp;
		/* The common case: a cached rule, its fields used in place (CFA
		 * offset in bits 3..14, rbp's slot in 8-byte units in 15..19).
		 * encode() keeps only rules whose offset is a positive multiple
		 * of 8 and, for rsp-based ones, whose rbp slot lies inside the
		 * frame: their CFA is above sp, aligned, and the slot in [sp,
		 * cfa) with no further check. */
		if (__builtin_expect((w & 3) == K_STEP, 1)) {
			save = (w >> 12) & 0xf8;
			cfa_rbp = w & 4;
			if (!cfa_rbp) {
				cfa = sp + (w & 0x7ff8);
			} else {
				/* rbp-based: rbp is whatever the frame held. */
				cfa = rbp + (w & 0x7ff8);
				if (cfa <= sp || (cfa & 7) || save > cfa - sp)
					return -EFAULT;
			}
		} else {
			int e = step_slow(pc, w, gen, sp, rbp, &cfa, &save, &cfa_rbp, st->wk);
			if (e > 0) {
				/* The end, by the rule alone or because rbp is 0. */
				dep_end = e == 2;
				goto ended;
			}
			if (e < 0)
				return e;
		}
		if (__builtin_expect(cfa <= hi, 1)) {
			pc = *(const uintptr_t *)(cfa - 8);
			if (save)
				rbp = *(const uintptr_t *)(cfa - save);
		} else {
			if (!read_checked(&page, cfa - 8, &pc) ||
			    (save && !read_checked(&page, cfa - save, &rbp)))
				return -EFAULT;
			ps = NULL; /* reusing it needs every word in the range */
		}
		if (ps) {
			/* Frame n-1's step, and what it read into frame n (when
			 * that fits: else ps is dropped with it). */
			ps->f[n - 1].flags =
			        (uint8_t)((cfa_rbp ? PF_CFA_RBP : 0) | (save ? 0 : PF_SAME_RBP));
			if (n < PREFIX_FRAMES) {
				ps->f[n].in_addr = cfa - (save ? save : 8);
				ps->f[n].in_chk = save ? rbp : pc;
			}
		}
		sp = cfa;
		/* As libunwind: a return address this low ends the stack. */
		if (pc < 0x4000)
			return (int)n; /* (not kept: its last read would need checking) */
	}
	/* Cut at n_max: the last frame was not stepped. */
	*plain = keep_walk(pf, ps, n, gen, false, false);
	return (int)n;
ended:
	*plain = keep_walk(pf, ps, n, gen, true, dep_end);
	return (int)n;
}

int ht_fastunwind_walk(uintptr_t *out, unsigned n_max, uintptr_t ra, uintptr_t fp,
                       struct ht_thread *th, unsigned *lead, unsigned *plain)
{
	/* The stack known readable from fp up, [lo, hi); nothing known (an
	 * empty range) sends every read to the probe. */
	uintptr_t lo, hi, page = 0;
	if (!ht_stack_read_range(th, fp, &lo, &hi))
		lo = hi = 0;
	*plain = 0;
	/* heaptap's own frames, by frame pointer: [fp] the caller's fp, [fp+8]
	 * the return address. libunwind's backtrace from fp's function has
	 * fp's own pc first, then [fp+8], ...; it looks for ra in its first
	 * HT_UNWIND_SLACK entries, so this looks as far. fp - lo < room holds
	 * for lo <= fp <= hi - 16: one compare clears both words. */
	uintptr_t room = hi - lo >= 16 ? hi - lo - 15 : 0;
	unsigned i = 0;
	uintptr_t saved_fp, ret;
	for (;; i++) {
		if (i + 1 >= HT_UNWIND_SLACK || (fp & 7))
			return -ENOENT;
		if (__builtin_expect(fp - lo < room, 1)) {
			saved_fp = ((const uintptr_t *)fp)[0];
			ret = ((const uintptr_t *)fp)[1];
		} else {
			/* (Copies, so that the usual case keeps both in
			 * registers.) */
			uintptr_t w[2];
			if (!read_checked(&page, fp, &w[0]) || !read_checked(&page, fp + 8, &w[1]))
				return -EFAULT;
			saved_fp = w[0];
			ret = w[1];
		}
		if (ret == ra)
			break;
		fp = saved_fp;
	}
	*lead = i + 1;
	if (n_max <= *lead)
		return 0;
	n_max -= *lead;
	/* The interposed function's caller: its sp is the CFA of the frame
	 * that returns to it, its rbp what that frame saved. The range from
	 * heaptap's frame covers it unless the walk ran on heaptap's stack.
	 * Below, every read lies in [sp, cfa) and sp only grows: one compare
	 * of cfa with hi clears both of a frame's reads. */
	uintptr_t sp = fp + 16, rbp = saved_fp, pc = ra;
	if (sp - lo >= hi - lo && !ht_stack_read_range(th, sp, &lo, &hi))
		lo = hi = 0;
	uint32_t gen = atomic_load_explicit(&generation, memory_order_relaxed);

	/* The previous stack (old) is matched against while the walk stays
	 * in the known stack range. */
	struct ht_fu_prefix *pf = hi ? prefix_of(th) : NULL;
	const struct pstack *old = NULL;
	if (pf) {
		old = &pf->s[pf->cur];
		if (!old->valid || old->gen != gen || old->top > hi || !old->n) {
			old = NULL;
		} else if (old->f[0].sp == sp && old->f[0].pc == pc &&
		           (!(old->f[0].flags & PF_DEP) || old->f[0].rbp == rbp)) {
			/* The previous stack again from its first frame (a loop
			 * that allocates): re-read, and it stays the previous
			 * stack as it is, a cut one included (it says no more
			 * than the memory it was read from). */
			out[0] = pc;
			int d = reuse(old, 0, out, 0, n_max);
			if (d >= 0) {
				*plain = old->own_at < (unsigned)d ? old->own_at : (unsigned)d;
				return d;
			}
			old = NULL; /* the stack above changed: walk it */
		}
	}
	struct at st = {pc, sp, rbp, hi, page, gen, work_of(th)};
	return walk_on(out, n_max, pf, old, &st, plain);
}
