/* What the tests that run the cnn command share: files in their temp folder DIR
 * (paths are relative to it) and the wait status of a command. */
#ifndef CNN_TEST_CLITEST_H
#define CNN_TEST_CLITEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* a big-endian 32-bit word (IDX headers) */
void clitest_put_be32(FILE *f, unsigned v);
/* n seeded 12x12 images img[n][144] and labels lab[n]: 4 classes, which quadrant holds
 * a bright 3x3 blob (learnable in a few steps) */
void clitest_quadrant_images(int n, uint64_t seed, uint8_t *img, uint8_t *lab);
/* DIR/IMG and DIR/LAB: those n seeded 12x12 one-channel images in IDX format and their
 * labels in IDX format */
void clitest_write_quadrants(const char *dir, const char *img, const char *lab, int n,
                             uint64_t seed);
/* DIR/REL's contents, NUL-terminated ("" when it cannot be read; free() it) */
char *clitest_slurp(const char *dir, const char *rel);
/* DIR/REL exists */
int clitest_exists(const char *dir, const char *rel);
/* The cnn command from $CNN_BIN (without it the test skips, exit 77: it runs under
 * ctest) and a new folder "/tmp/<prefix>_XXXXXX" written into dir (exits 1 when it
 * cannot be made). */
const char *clitest_setup(const char *prefix, char *dir, size_t len);
/* tu_finish(name); the folder is removed when every check passed, else kept and named */
int clitest_finish(const char *name, const char *dir);
/* a system() status: the command exited 0 / exited non-zero (not killed) */
int clitest_exited_ok(int status);
int clitest_failed_cleanly(int status);

#endif
