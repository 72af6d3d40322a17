/* Runs one AMX tile instruction: exit 0 where AMX works, a signal or 1 where it does not.
 * The Makefile builds llama.cpp without AMX where this fails (see there). */
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) return 1;
    struct { unsigned char palette, start; unsigned char reserved[14]; unsigned short colsb[16]; unsigned char rows[16]; } __attribute__((packed)) cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1; cfg.colsb[0] = 64; cfg.rows[0] = 16;
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_release();
    return 0;
}
