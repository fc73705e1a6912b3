/* safetensors: bit-exact round trips of every dtype with metadata, a clear error
 * naming the file for each kind of malformed file, and writes that never lose
 * the previous file (failed writes, failed renames, a writer killed mid-write);
 * a "checksum": "crc32:..." in the metadata is checked against the data (a CRC-32
 * written here from its definition, as any other tool would); failed writes say
 * "left intact" only when there was a previous file; stale temp files of earlier
 * writes of the same file are removed, and nothing else. */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp, fork, kill, truncate */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cnn/cnn.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "testutil.h"

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}

static void cleanup(void) {
  if (tmpdir[0]) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *read_all(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *p = malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, fp) != (size_t)n) {
    free(p);
    p = NULL;
  }
  fclose(fp);
  *len = (size_t)n;
  return p;
}

static void write_all(const char *path, const void *p, size_t n) {
  FILE *fp = fopen(path, "wb");
  CHECK(fp != NULL, "cannot create %s", path);
  if (!fp) return;
  CHECK(fwrite(p, 1, n, fp) == n, "short write to %s", path);
  fclose(fp);
}

/* a file with header length `hlen` (or the header's own length when ~0), the header
 * text and `data_len` bytes of data */
static void write_raw(const char *path, const char *hdr, uint64_t hlen, size_t data_len) {
  size_t h = strlen(hdr);
  if (hlen == ~(uint64_t)0) hlen = h;
  size_t n = 8 + h + data_len;
  uint8_t *buf = calloc(1, n);
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
  memcpy(buf + 8, hdr, h);
  for (size_t i = 0; i < data_len; i++) buf[8 + h + i] = (uint8_t)i;
  write_all(path, buf, n);
  free(buf);
}

/* files in tmpdir whose name contains ".tmp." (left-over temp files) */
static int count_temp_files(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

static void expect_error(const char *path, const char *what, const char *needle) {
  cnn_st_file f;
  cnn_error_clear();
  cnn_status s = cnn_st_read(path, &f);
  CHECK(s != CNN_OK, "%s: read should fail", what);
  if (s == CNN_OK) {
    cnn_st_free(&f);
    return;
  }
  const char *msg = cnn_last_error();
  CHECK(strstr(msg, path) != NULL, "%s: message does not name the file: %s", what, msg);
  if (needle) CHECK(strstr(msg, needle) != NULL, "%s: message lacks '%s': %s", what, needle, msg);
  CHECK(f.n == 0 && f.tensors == NULL && f.data == NULL, "%s: output not cleared", what);
  printf("  %-28s -> %s\n", what, msg);
}

static void test_round_trip(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/good.safetensors", tmpdir);
  float f32[6];
  uint16_t f16[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
  uint16_t bf16[4] = {0x3f80, 0xbf80, 0x7f80, 0xffc1};
  int32_t i32[3] = {-1, 0, 2147483647};
  int64_t i64[2] = {INT64_MIN, 1234567890123ll};
  uint8_t u8[5] = {0, 1, 127, 128, 255};
  double f64[2] = {3.141592653589793, -0.0};
  float scalar = 42.5f;
  tu_fill_uniform(f32, 6, -3, 3, 7);
  f32[5] = -0.0f;
  int64_t s_f32[2] = {2, 3}, s_f16[1] = {4}, s_bf16[2] = {2, 2}, s_i32[1] = {3}, s_i64[1] = {2},
          s_u8[1] = {5}, s_f64[3] = {1, 1, 2}, s_empty[2] = {0, 3};
  cnn_st_item items[] = {
      {"conv1.weight", "F32", 2, s_f32, f32, sizeof f32},
      {"half", "F16", 1, s_f16, f16, sizeof f16},
      {"brain", "BF16", 2, s_bf16, bf16, sizeof bf16},
      {"ints", "I32", 1, s_i32, i32, sizeof i32},
      {"bn.num_batches_tracked", "I64", 1, s_i64, i64, sizeof i64},
      {"bytes", "U8", 1, s_u8, u8, sizeof u8},
      {"doubles", "F64", 3, s_f64, f64, sizeof f64},
      {"scalar", "F32", 0, NULL, &scalar, sizeof scalar},
      {"empty", "F32", 2, s_empty, NULL, 0},
      {"we\"ird\\name\n", "U8", 1, s_u8, u8, sizeof u8},
  };
  int n = (int)(sizeof items / sizeof items[0]);
  const char *mk[] = {"format", "cfg", "odd \"key\"\t"};
  const char *mv[] = {"pt", "[net]\nheight=28\n# \"quoted\" \\ back\x01slash\n", "ü ✓"};
  CHECK_OK(cnn_st_write(path, items, n, mk, mv, 3));
  CHECK(count_temp_files() == 0, "temp file left after a good write");

  size_t len;
  char *raw = read_all(path, &len);
  CHECK(raw != NULL, "cannot read back %s", path);
  if (raw) {
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | (uint8_t)raw[i];
    CHECK(hl % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hl);
    CHECK(raw[8] == '{', "header does not start with {");
    CHECK(raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}', "header padding is not spaces");
    free(raw);
  }

  cnn_st_file f;
  CHECK_OK(cnn_st_read(path, &f));
  CHECK(f.n == n, "read %d tensors, wrote %d", f.n, n);
  size_t off = 0;
  for (int i = 0; i < n && i < f.n; i++) {
    const cnn_st_tensor *t = &f.tensors[i];
    CHECK(strcmp(t->name, items[i].name) == 0, "tensor %d name %s", i, t->name);
    CHECK(strcmp(t->dtype, items[i].dtype) == 0, "tensor %s dtype %s", t->name, t->dtype);
    CHECK(t->ndim == items[i].ndim, "tensor %s ndim %d", t->name, t->ndim);
    for (int d = 0; d < t->ndim && d < items[i].ndim; d++)
      CHECK(t->shape[d] == items[i].shape[d], "tensor %s shape[%d]", t->name, d);
    CHECK(t->begin == off && t->end == off + items[i].nbytes, "tensor %s offsets [%zu,%zu]",
          t->name, t->begin, t->end);
    if (items[i].nbytes)
      CHECK(memcmp(f.data + t->begin, items[i].data, items[i].nbytes) == 0,
            "tensor %s bytes differ", t->name);
    off += items[i].nbytes;
    CHECK(cnn_st_find(&f, items[i].name) == t, "find %s", items[i].name);
  }
  CHECK(f.data_len == off, "data_len %zu, want %zu", f.data_len, off);
  CHECK(cnn_st_find(&f, "nope") == NULL, "find of a missing name");
  CHECK(f.n_meta == 3, "n_meta %d", f.n_meta);
  for (int i = 0; i < 3; i++) {
    const char *v = cnn_st_meta(&f, mk[i]);
    CHECK(v && strcmp(v, mv[i]) == 0, "meta %s = %s", mk[i], v ? v : "(null)");
  }
  CHECK(cnn_st_meta(&f, "absent") == NULL, "absent metadata key");
  cnn_st_free(&f);
  CHECK(f.n == 0 && f.tensors == NULL, "free clears");
  cnn_st_free(&f); /* twice is harmless */

  /* an empty file (no tensors, no metadata) round-trips too */
  char epath[128];
  snprintf(epath, sizeof epath, "%s/empty.safetensors", tmpdir);
  CHECK_OK(cnn_st_write(epath, NULL, 0, NULL, NULL, 0));
  CHECK_OK(cnn_st_read(epath, &f));
  CHECK(f.n == 0 && f.n_meta == 0 && f.data_len == 0, "empty file");
  cnn_st_free(&f);

  /* a file written the way Python's safetensors does (spaces after separators,
   * __metadata__ last) reads the same */
  char ppath[128];
  snprintf(ppath, sizeof ppath, "%s/py.safetensors", tmpdir);
  write_raw(ppath,
            "{\"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]}, "
            "\"a\": {\"dtype\": \"F16\", \"shape\": [1, 2], \"data_offsets\": [0, 4]}, "
            "\"__metadata__\": {\"format\": \"pt\"}}   ",
            ~(uint64_t)0, 6);
  CHECK_OK(cnn_st_read(ppath, &f));
  CHECK(f.n == 2 && strcmp(f.tensors[0].name, "b") == 0, "header order kept");
  const cnn_st_tensor *a = cnn_st_find(&f, "a");
  CHECK(a && a->begin == 0 && a->end == 4 && a->ndim == 2 && a->shape[1] == 2, "tensor a");
  CHECK(cnn_st_meta(&f, "format") && strcmp(cnn_st_meta(&f, "format"), "pt") == 0, "py meta");
  cnn_st_free(&f);
}

static void test_malformed(void) {
  char p[128];
  printf("malformed files:\n");
#define CASE(name) snprintf(p, sizeof p, "%s/" name ".safetensors", tmpdir)
  CASE("missing");
  expect_error(p, "missing file", NULL);

  CASE("short");
  write_all(p, "\x02\0\0\0", 4);
  expect_error(p, "shorter than 8 bytes", "shorter");

  CASE("hlen_big");
  write_raw(p, "{}", 1000, 0);
  expect_error(p, "header length > file", "larger than the file");

  CASE("hlen_absurd");
  { /* a sparse 200 MB file so the length fits the file but is still absurd */
    write_raw(p, "{}", 150u * 1000u * 1000u, 0);
    CHECK(truncate(p, 200l * 1000 * 1000) == 0, "truncate");
    expect_error(p, "header length absurd", "absurd");
    remove(p);
  }

  CASE("hlen_huge");
  write_raw(p, "{}", ~(uint64_t)0 - 1, 0);
  expect_error(p, "header length 2^64-2", "header length");

  struct {
    const char *name, *hdr, *needle;
    size_t data;
  } cases[] = {
      {"bad_json", "{\"a\": [1, 2,}", "does not parse", 0},
      {"not_object", "[1, 2]        ", "not a JSON object", 0},
      {"trailing", "{}  x", "after the header", 0},
      {"entry_not_object", "{\"a\": 3}", "not an object", 0},
      {"no_dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "dtype", 4},
      {"no_shape", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "shape", 4},
      {"no_offsets", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", "data_offsets", 4},
      {"unknown_dtype", "{\"a\": {\"dtype\": \"Q7\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
       "unknown dtype", 4},
      {"dtype_not_str", "{\"a\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}",
       "dtype", 4},
      {"size_mismatch", "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
       "need 12 bytes", 8},
      {"out_of_buffer", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
       "run past", 8},
      {"overlap",
       "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
       " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
       "overlap", 12},
      {"gap",
       "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
       " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
       "gap", 12},
      {"leading_gap", "{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [2, 4]}}",
       "gap", 4},
      {"unused_tail", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}",
       "unused", 8},
      {"data_no_tensors", "{}", "no tensors", 4},
      {"negative_dim", "{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
       "negative", 4},
      {"fraction_dim", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1.5], \"data_offsets\": [0, 1]}}",
       "shape[0]", 1},
      {"huge_dims",
       "{\"a\": {\"dtype\": \"F64\", \"shape\": [4294967296, 4294967296, 4294967296], "
       "\"data_offsets\": [0, 8]}}",
       "overflows", 8},
      {"too_many_dims",
       "{\"a\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}",
       "dims", 1},
      {"reversed", "{\"a\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [4, 0]}}",
       "begin is after end", 4},
      {"neg_offset", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [-1, 0]}}",
       "data_offsets", 1},
      {"one_offset", "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1]}}",
       "data_offsets", 1},
      {"duplicate",
       "{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
       " \"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
       "duplicate", 2},
      {"meta_not_string", "{\"__metadata__\": {\"k\": 1}}", "not a string", 0},
      {"meta_not_object", "{\"__metadata__\": [\"k\"]}", "not an object", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(p, sizeof p, "%s/%s.safetensors", tmpdir, cases[i].name);
    write_raw(p, cases[i].hdr, ~(uint64_t)0, cases[i].data);
    expect_error(p, cases[i].name, cases[i].needle);
  }
#undef CASE
}

/* every truncation of a valid file fails cleanly; random byte flips never crash */
static void test_fuzz(void) {
  char good[128], p[128];
  snprintf(good, sizeof good, "%s/fuzz_src.safetensors", tmpdir);
  snprintf(p, sizeof p, "%s/fuzz.safetensors", tmpdir);
  float w[12];
  tu_fill_uniform(w, 12, -1, 1, 3);
  int64_t s1[2] = {3, 4}, s2[1] = {2};
  cnn_st_item items[2] = {{"w", "F32", 2, s1, w, sizeof w}, {"b", "F32", 1, s2, w, 8}};
  const char *mk[1] = {"k"}, *mv[1] = {"v"};
  CHECK_OK(cnn_st_write(good, items, 2, mk, mv, 1));
  size_t len;
  char *src = read_all(good, &len);
  if (!src) return;
  int bad_ok = 0;
  for (size_t cut = 0; cut < len; cut++) {
    write_all(p, src, cut);
    cnn_st_file f;
    cnn_status s = cnn_st_read(p, &f);
    if (s == CNN_OK) {
      bad_ok++;
      cnn_st_free(&f);
    } else if (!strstr(cnn_last_error(), p)) {
      bad_ok++;
    }
  }
  CHECK(bad_ok == 0, "%d truncations read OK or without the file name", bad_ok);
  char *mut = malloc(len);
  for (int trial = 0; trial < 400; trial++) {
    memcpy(mut, src, len);
    int flips = 1 + (int)(cnn_rng_u64(99, (uint64_t)trial * 8) % 3);
    for (int k = 0; k < flips; k++) {
      size_t at = cnn_rng_u64(99, (uint64_t)trial * 8 + 1 + k) % (len < 200 ? len : 200);
      mut[at] = (char)cnn_rng_u64(98, (uint64_t)trial * 8 + k);
    }
    write_all(p, mut, len);
    cnn_st_file f;
    if (cnn_st_read(p, &f) == CNN_OK) {
      /* whatever parsed must be internally consistent */
      for (int i = 0; i < f.n; i++)
        CHECK(f.tensors[i].end <= f.data_len, "fuzz trial %d: tensor past the buffer", trial);
      cnn_st_free(&f);
    }
  }
  free(mut);
  free(src);
}

static void test_failed_writes(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/good.safetensors", tmpdir);
  float v[4] = {1, 2, 3, 4};
  int64_t shp[1] = {4};
  cnn_st_item ok_item = {"v", "F32", 1, shp, v, sizeof v};
  CHECK_OK(cnn_st_write(path, &ok_item, 1, NULL, NULL, 0));
  size_t len0, len1;
  char *before = read_all(path, &len0);

  struct {
    const char *what;
    cnn_st_item item;
  } bad[] = {
      {"NULL data", {"v", "F32", 1, shp, NULL, sizeof v}},
      {"wrong nbytes", {"v", "F32", 1, shp, v, 12}},
      {"unknown dtype", {"v", "F33", 1, shp, v, sizeof v}},
      {"reserved name", {"__metadata__", "F32", 1, shp, v, sizeof v}},
      {"NULL name", {NULL, "F32", 1, shp, v, sizeof v}},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cnn_status s = cnn_st_write(path, &bad[i].item, 1, NULL, NULL, 0);
    CHECK(s != CNN_OK, "write with %s should fail", bad[i].what);
    CHECK(strstr(cnn_last_error(), path) != NULL, "%s: message lacks the path: %s", bad[i].what,
          cnn_last_error());
  }
  cnn_st_item dup[2] = {ok_item, ok_item};
  CHECK(cnn_st_write(path, dup, 2, NULL, NULL, 0) != CNN_OK, "duplicate names should fail");
  const char *nk[1] = {NULL}, *nv[1] = {"x"};
  CHECK(cnn_st_write(path, &ok_item, 1, nk, nv, 1) != CNN_OK, "NULL metadata key should fail");

  char *after = read_all(path, &len1);
  CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0,
        "a failed write changed the old file");
  CHECK(count_temp_files() == 0, "temp file left after failed writes");
  free(after);

  /* failure after the temp file is written: rename over a non-empty directory */
  char dpath[128], inner[160];
  snprintf(dpath, sizeof dpath, "%s/dir.safetensors", tmpdir);
  CHECK(mkdir(dpath, 0700) == 0, "mkdir");
  snprintf(inner, sizeof inner, "%s/keep", dpath);
  write_all(inner, "x", 1);
  cnn_status s = cnn_st_write(dpath, &ok_item, 1, NULL, NULL, 0);
  CHECK(s == CNN_ERR_IO, "rename over a directory should fail with an I/O error: %s",
        cnn_last_error());
  CHECK(count_temp_files() == 0, "temp file left after a failed rename");
  printf("  failed rename -> %s\n", cnn_last_error());

  /* a directory that does not exist */
  char npath[160];
  snprintf(npath, sizeof npath, "%s/no/such/dir/x.safetensors", tmpdir);
  s = cnn_st_write(npath, &ok_item, 1, NULL, NULL, 0);
  CHECK(s == CNN_ERR_IO && strstr(cnn_last_error(), npath), "missing dir: %s", cnn_last_error());

  /* a writer killed at random moments leaves either the old or the new file, whole */
  enum { BIG = 1 << 21 };
  float *big = malloc(sizeof(float) * BIG);
  int64_t bshape[1] = {BIG};
  for (int i = 0; i < BIG; i++) big[i] = 1.0f;
  cnn_st_item bi = {"big", "F32", 1, bshape, big, sizeof(float) * BIG};
  CHECK_OK(cnn_st_write(path, &bi, 1, NULL, NULL, 0));
  int intact = 0, trials = 8;
  for (int t = 0; t < trials; t++) {
    pid_t pid = fork();
    if (pid == 0) {
      for (int k = 0;; k++) {
        for (int i = 0; i < BIG; i++) big[i] = (float)(k + 2);
        if (cnn_st_write(path, &bi, 1, NULL, NULL, 0) != CNN_OK) _exit(3);
      }
    }
    struct timespec ts = {0, (long)(1 + t * 7) * 1000000l};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cnn_st_file f;
    if (cnn_st_read(path, &f) == CNN_OK) {
      const cnn_st_tensor *tt = cnn_st_find(&f, "big");
      if (tt && tt->end - tt->begin == sizeof(float) * BIG) {
        const float *d = (const float *)(f.data + tt->begin);
        int same = 1;
        for (int i = 1; i < BIG; i++) same &= d[i] == d[0];
        intact += same;
      }
      cnn_st_free(&f);
    } else {
      fprintf(stderr, "after kill %d: %s\n", t, cnn_last_error());
    }
  }
  CHECK(intact == trials, "%d of %d files intact after killing the writer", intact, trials);
  free(big);
  free(before);
}

/* CRC-32 from its definition (reflected, polynomial 0xEDB88320, init and final
 * xor ~0): the checksum of gzip, PNG and Python's zlib.crc32 */
static uint32_t crc32_ref(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
  }
  return c ^ 0xffffffffu;
}

static void test_checksum(void) {
  char path[128], bad[128];
  snprintf(path, sizeof path, "%s/sum.safetensors", tmpdir);
  snprintf(bad, sizeof bad, "%s/sum_bad.safetensors", tmpdir);
  float a[5] = {1, -2, 3.5f, 0, 1e-3f};
  uint8_t b[3] = {7, 8, 9};
  int64_t sa[1] = {5}, sb[1] = {3};
  cnn_st_item items[2] = {{"a", "F32", 1, sa, a, sizeof a}, {"b", "U8", 1, sb, b, sizeof b}};
  uint8_t data[sizeof a + sizeof b];
  memcpy(data, a, sizeof a);
  memcpy(data + sizeof a, b, sizeof b);
  char sum[32];
  snprintf(sum, sizeof sum, "crc32:%08x", (unsigned)crc32_ref(data, sizeof data));
  CHECK(crc32_ref((const uint8_t *)"123456789", 9) == 0xcbf43926u,
        "the reference CRC-32 gives the standard check value");
  const char *mk[2] = {"checksum", "note"}, *mv[2] = {sum, "x"};
  CHECK_OK(cnn_st_write(path, items, 2, mk, mv, 2));
  cnn_st_file f;
  CHECK_OK(cnn_st_read(path, &f));
  cnn_st_free(&f);
  /* the same file with a wrong checksum: refused as corrupt */
  const char *wrong[] = {"crc32:00000000", "CRC32:zz", "crc32:123"};
  for (int k = 0; k < 3; k++) {
    mv[0] = wrong[k];
    int known = !strncmp(wrong[k], "crc32:", 6);
    CHECK_OK(cnn_st_write(bad, items, 2, mk, mv, 2));
    if (known) {
      expect_error(bad, wrong[k], "corrupt");
    } else { /* another algorithm's name: not ours to check */
      CHECK_OK(cnn_st_read(bad, &f));
      cnn_st_free(&f);
    }
  }
  /* the right checksum, one flipped data bit */
  size_t len;
  char *raw = read_all(path, &len);
  if (raw) {
    raw[len - 2] ^= 0x10;
    write_all(bad, raw, len);
    expect_error(bad, "one flipped data bit", "corrupt");
    free(raw);
  }
  remove(path);
  remove(bad);
}

/* a pid that no process has (a child that has exited and been reaped) */
static pid_t dead_pid(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  return pid;
}

static void make_file(const char *name, double age_s, int is_dir) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  if (is_dir) CHECK(mkdir(p, 0700) == 0, "mkdir %s", p);
  else write_all(p, "partial", 7);
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec -= (time_t)age_s;
  t[1] = t[0];
  CHECK(utimensat(AT_FDCWD, p, t, 0) == 0, "utimensat %s", p);
}

static int exists(const char *name) {
  char p[1024];
  struct stat sb;
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return lstat(p, &sb) == 0;
}

static void test_stale_temps(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/stale.safetensors", tmpdir);
  long d1 = (long)dead_pid(), d2 = (long)dead_pid(), d3 = (long)dead_pid();
  struct {
    char name[96];
    double age;
    int dir, removed;
  } f[] = {
      {"", 600, 0, 1},   /* a dead writer's, 10 minutes old */
      {"", 0, 0, 0},     /* a dead writer's, just written: kept a while (another pid namespace?) */
      {"", 600, 0, 0},   /* pid 1 runs: a live writer's, 10 minutes untouched */
      {"", 7200, 0, 1},  /* a running pid, untouched for 2 hours: the pid was reused */
      {"", 600, 0, 0},   /* another target's temp file */
      {"", 600, 0, 0},   /* not exactly our pattern */
      {"", 600, 0, 0},
      {"", 600, 1, 0},   /* a directory */
  };
  snprintf(f[0].name, 96, "stale.safetensors.tmp.%ld", d1);
  snprintf(f[1].name, 96, "stale.safetensors.tmp.%ld", d2);
  snprintf(f[2].name, 96, "stale.safetensors.tmp.1");
  snprintf(f[3].name, 96, "stale.safetensors.tmp.%ld", (long)getppid());
  snprintf(f[4].name, 96, "other.safetensors.tmp.%ld", d1);
  snprintf(f[5].name, 96, "stale.safetensors.tmp.%ld.keep", d1);
  snprintf(f[6].name, 96, "stale.safetensors.tmp.x%ld", d1);
  snprintf(f[7].name, 96, "stale.safetensors.tmp.%ld", d3);
  int n = (int)(sizeof f / sizeof f[0]);
  for (int i = 0; i < n; i++) make_file(f[i].name, f[i].age, f[i].dir);
  float v[2] = {1, 2};
  int64_t shp[1] = {2};
  cnn_st_item it = {"v", "F32", 1, shp, v, sizeof v};
  CHECK_OK(cnn_st_write(path, &it, 1, NULL, NULL, 0));
  for (int i = 0; i < n; i++) {
    int gone = !exists(f[i].name);
    CHECK(gone == f[i].removed, "%s (%.0f s old%s) should be %s", f[i].name, f[i].age,
          f[i].dir ? ", a directory" : "", f[i].removed ? "removed" : "kept");
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmpdir, f[i].name);
    if (f[i].dir) rmdir(p);
    else remove(p);
  }
  remove(path);
}

/* a failed write says the previous file is intact only when there was one */
static void test_failure_messages(void) {
  char fresh[128], old[128];
  snprintf(fresh, sizeof fresh, "%s/fresh.safetensors", tmpdir);
  snprintf(old, sizeof old, "%s/old.safetensors", tmpdir);
  enum { N = 1 << 16 };
  float *big = calloc(N, sizeof *big);
  int64_t shp[1] = {N};
  cnn_st_item it = {"v", "F32", 1, shp, big, N * sizeof *big};
  cnn_st_item small = {"v", "F32", 1, shp, big, 0};
  int64_t zero[1] = {0};
  small.shape = zero;
  CHECK_OK(cnn_st_write(old, &small, 1, NULL, NULL, 0));
  pid_t pid = fork();
  if (pid == 0) { /* writes past 8 KiB fail (EFBIG) in this process */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {8192, 8192};
    setrlimit(RLIMIT_FSIZE, &rl);
    int bits = 0;
    if (cnn_st_write(fresh, &it, 1, NULL, NULL, 0) == CNN_OK) bits |= 1;
    else if (strstr(cnn_last_error(), "intact")) bits |= 2;
    else if (!strstr(cnn_last_error(), fresh)) bits |= 4;
    if (cnn_st_write(old, &it, 1, NULL, NULL, 0) == CNN_OK) bits |= 8;
    else if (!strstr(cnn_last_error(), "left intact")) bits |= 16;
    fprintf(stderr, "  failed writes -> %s\n", cnn_last_error());
    _exit(bits);
  }
  int ws = 0;
  waitpid(pid, &ws, 0);
  int bits = WIFEXITED(ws) ? WEXITSTATUS(ws) : 255;
  CHECK(!(bits & 1) && !(bits & 8), "writes beyond RLIMIT_FSIZE fail (%d)", bits);
  CHECK(!(bits & 2), "a failed first write does not claim a previous file was left intact");
  CHECK(!(bits & 4), "a failed first write names the file");
  CHECK(!(bits & 16), "a failed write over a file says the previous file is left intact");
  CHECK(access(fresh, F_OK) != 0, "the failed first write left no file");
  char tf[96], to[96];
  snprintf(tf, sizeof tf, "fresh.safetensors.tmp.%ld", (long)pid);
  snprintf(to, sizeof to, "old.safetensors.tmp.%ld", (long)pid);
  CHECK(!exists(tf) && !exists(to), "the failed writes left no temp file");
  free(big);
  remove(old);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_st_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_malformed();
  test_fuzz();
  test_failed_writes();
  test_checksum();
  test_stale_temps();
  test_failure_messages();
  cleanup();
  return tu_finish("test_safetensors");
}
