// A bare-metal test guest for QEMU: a Multiboot v1 (32-bit ELF) program that fills guest RAM with known
// content and then halts with interrupts off, keeping that memory, so KSM tests run on a real VMM.
//
// Command line (-append): seed=N image=N common=PAGES unique=PAGES zero=PAGES
//   common  pages of a "common image", the same in every guest (content from `image`)
//   unique  pages only this guest has (content from `seed`, which differs per guest)
//   zero    pages written with zeros
// The regions follow each other from 4 MiB up, each starting on a 2 MiB boundary. When done the
// guest writes "filled common=… unique=… zero=… seed=…" on COM1 (-serial stdio); "error …" if the
// RAM Multiboot reports cannot hold them.
//
// Built by test/helpers/qemu-guest.ts: gcc -m32 -ffreestanding -nostdlib -static -T guest.ld guest.c

#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0x00000003u /* page-aligned modules, memory info */
#define PAGE 4096u
#define FILL_BASE 0x400000u
#define ALIGN_2M(x) (((x) + 0x1FFFFFu) & ~0x1FFFFFu)

typedef unsigned int u32;

__attribute__((section(".multiboot"), used, aligned(4)))
static const u32 multiboot_header[3] = {MB_MAGIC, MB_FLAGS, (u32)-(MB_MAGIC + MB_FLAGS)};

__attribute__((used, aligned(16))) static unsigned char stack[16384];

void kmain(u32 magic, const u32 *info);

__asm__(
    ".text\n"
    ".globl _start\n"
    "_start:\n"
    "  mov $stack + 16384, %esp\n"
    "  push %ebx\n"
    "  push %eax\n"
    "  call kmain\n"
    "1: cli\n"
    "  hlt\n"
    "  jmp 1b\n");

static inline void outb(unsigned short port, unsigned char v) {
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline unsigned char inb(unsigned short port) {
  unsigned char v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

#define COM1 0x3F8
static void serial_init(void) {
  outb(COM1 + 1, 0x00); /* no interrupts */
  outb(COM1 + 3, 0x80); /* DLAB */
  outb(COM1 + 0, 0x01); /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* 8N1 */
  outb(COM1 + 2, 0xC7); /* FIFO */
}
static void putc_serial(char c) {
  while ((inb(COM1 + 5) & 0x20) == 0) {
  }
  outb(COM1, (unsigned char)c);
}
static void puts_serial(const char *s) {
  for (; *s; s++) {
    if (*s == '\n') putc_serial('\r');
    putc_serial(*s);
  }
}
static void putu_serial(u32 v) {
  char buf[11];
  int i = 10;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  puts_serial(&buf[i]);
}

/* Chris Wellons' lowbias32: a 32-bit integer hash with good avalanche. */
static u32 hash32(u32 x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/* One page from (seed, index): its first word is the index, the rest xorshift32 from a hashed state. */
static void fill_page(u32 *page, u32 seed, u32 index) {
  u32 s = hash32(seed * 0x9E3779B9u ^ hash32(index + 0x632BE5ABu));
  if (s == 0) s = 1;
  page[0] = index;
  for (u32 i = 1; i < PAGE / 4; i++) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    page[i] = s;
  }
}

/* The value of `key=` in the command line, or `fallback`. */
static u32 arg(const char *cmdline, const char *key, u32 fallback) {
  if (cmdline == 0) return fallback;
  for (const char *p = cmdline; *p; p++) {
    if (p != cmdline && p[-1] != ' ') continue;
    const char *k = key, *q = p;
    while (*k && *q == *k) k++, q++;
    if (*k || *q != '=') continue;
    q++;
    if (*q < '0' || *q > '9') return fallback;
    u32 v = 0;
    while (*q >= '0' && *q <= '9') v = v * 10 + (u32)(*q++ - '0');
    return v;
  }
  return fallback;
}

void kmain(u32 magic, const u32 *info) {
  serial_init();
  if (magic != 0x2BADB002u) {
    puts_serial("error not booted by a Multiboot loader\n");
    return;
  }
  const char *cmdline = (info[0] & 4) ? (const char *)info[4] : 0;
  u32 seed = arg(cmdline, "seed", 1);
  u32 image = arg(cmdline, "image", 0xC0FFEEu);
  u32 common = arg(cmdline, "common", 0);
  u32 unique = arg(cmdline, "unique", 0);
  u32 zero = arg(cmdline, "zero", 0);
  u32 ram_end = (info[0] & 1) ? 0x100000u + info[2] * 1024u : 0; /* mem_upper: KiB above 1 MiB */

  u32 common_at = FILL_BASE;
  u32 unique_at = ALIGN_2M(common_at + common * PAGE);
  u32 zero_at = ALIGN_2M(unique_at + unique * PAGE);
  u32 end = zero_at + zero * PAGE;
  if (end > ram_end) {
    puts_serial("error the regions need RAM up to ");
    putu_serial(end >> 10);
    puts_serial(" KiB, the guest has ");
    putu_serial(ram_end >> 10);
    puts_serial(" KiB\n");
    return;
  }
  for (u32 i = 0; i < common; i++) fill_page((u32 *)(common_at + i * PAGE), image, i);
  for (u32 i = 0; i < unique; i++) fill_page((u32 *)(unique_at + i * PAGE), seed ^ 0x5EEDF00Du, i);
  for (u32 i = 0; i < zero; i++) {
    volatile u32 *p = (volatile u32 *)(zero_at + i * PAGE);
    for (u32 j = 0; j < PAGE / 4; j++) p[j] = 0;
  }
  puts_serial("filled common=");
  putu_serial(common);
  puts_serial(" unique=");
  putu_serial(unique);
  puts_serial(" zero=");
  putu_serial(zero);
  puts_serial(" seed=");
  putu_serial(seed);
  puts_serial("\n");
}
