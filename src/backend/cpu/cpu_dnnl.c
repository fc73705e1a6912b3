/* The oneDNN conv engine of the cpu backend (see cpu_dnnl.h). oneDNN's C API of the
 * 2.x series (Debian bookworm ships 2.6.3): op descriptors, primitive descriptors,
 * primitives. Debian builds it on GNU OpenMP, the runtime the rest of the cpu
 * backend uses, so its parallel regions run on the same team (omp_get_max_threads
 * at execution); a primitive is built for one thread count, which is part of the
 * cache key.
 *
 * Scratch: the primitives run with a user scratchpad (dnnl_scratchpad_mode_user),
 * one buffer per cpu_dnnl grown to the largest primitive's need; reordered weights
 * and bf16 copies of activations live in buffers of their cache entry. None of it
 * comes out of the net's planned conv workspace. */
#include "backend/cpu/cpu_dnnl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

#if CNN_HAVE_DNNL
#include <dnnl.h>

typedef struct prim {
  /* key */
  cnn_conv_desc d;
  int dir, variant, with_bias, act, threads;
  float alpha;
  /* the conv and its descriptors */
  dnnl_primitive_t conv;
  dnnl_memory_desc_t x_md, y_md, w_md, b_md; /* ours: f32 nhwc / nhwc / KRSC / [k] */
  dnnl_memory_desc_t cw_md;                  /* the conv's (diff) weights */
  dnnl_memory_desc_t ca_md, ca2_md;          /* bf16: the conv's activation operands */
  dnnl_primitive_t w_reorder;  /* fwd, bwd-data: ours -> cw; bwd-filter: cw -> ours */
  dnnl_primitive_t a_reorder;  /* bf16: x (fwd, bwd-filter) or dy (bwd-data) -> bf16 */
  dnnl_primitive_t a2_reorder; /* bf16 bwd-filter: dy -> bf16 */
  void *wbuf, *abuf, *a2buf;
  int post_act;  /* an activation oneDNN has no exact post-op for: ours, after */
  int sum;       /* bwd-data: dx accumulated by a sum post-op (else through e->tmp) */
  size_t scratch;
  int refused;   /* oneDNN does not take this key (remembered: building is not free) */
  char impl[64];
} prim;

struct cpu_dnnl {
  dnnl_engine_t eng;
  dnnl_stream_t stream;
  int bf16;
  prim **p;
  int np, cap;
  void *scratch, *tmp;
  size_t scratch_bytes, tmp_bytes;
  char desc[96];
};

static cnn_status dnnl_err(dnnl_status_t s, const char *what) {
  return cnn_error(s == dnnl_unimplemented ? CNN_UNSUPPORTED : CNN_ERR_ARG,
                   "cpu dnnl: %s failed (dnnl status %d)", what, (int)s);
}
#define DN(call, what)                                        \
  do {                                                        \
    dnnl_status_t s_ = (call);                                \
    if (s_ != dnnl_success) { st = dnnl_err(s_, what); goto out; } \
  } while (0)

cpu_dnnl *cpu_dnnl_create(void) {
  /* one thread pool: a oneDNN on another runtime (TBB, its own threadpool) would keep
   * its workers spinning beside OpenMP's team (see cpu.h), so it is not used */
  if (dnnl_version()->cpu_runtime != DNNL_RUNTIME_OMP) return NULL;
  cpu_dnnl *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  if (dnnl_engine_create(&e->eng, dnnl_cpu, 0) != dnnl_success) {
    free(e);
    return NULL;
  }
  if (dnnl_stream_create(&e->stream, e->eng, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy(e->eng);
    free(e);
    return NULL;
  }
  /* isa values are bit sets: a CPU with bf16 instructions has all of these bits
   * (avx512_core_amx includes them too); DNNL_MAX_CPU_ISA lowers what it reports */
  dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  e->bf16 = ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
            (unsigned)dnnl_cpu_isa_avx512_core_bf16;
  return e;
}

static void prim_free(prim *p) {
  if (!p) return;
  if (p->conv) dnnl_primitive_destroy(p->conv);
  if (p->w_reorder) dnnl_primitive_destroy(p->w_reorder);
  if (p->a_reorder) dnnl_primitive_destroy(p->a_reorder);
  if (p->a2_reorder) dnnl_primitive_destroy(p->a2_reorder);
  free(p->wbuf);
  free(p->abuf);
  free(p->a2buf);
  free(p);
}

void cpu_dnnl_destroy(cpu_dnnl *e) {
  if (!e) return;
  for (int i = 0; i < e->np; i++) prim_free(e->p[i]);
  free(e->p);
  free(e->scratch);
  free(e->tmp);
  dnnl_stream_destroy(e->stream);
  dnnl_engine_destroy(e->eng);
  free(e);
}

int cpu_dnnl_has_bf16(const cpu_dnnl *e) { return e && e->bf16; }

int cpu_dnnl_uses_bf16(const cpu_dnnl *e, const cnn_conv_desc *d) {
  return e && e->bf16 && d->math == CNN_MATH_BF16;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
  case dnnl_cpu_isa_sse41: return "sse41";
  case dnnl_cpu_isa_avx: return "avx";
  case dnnl_cpu_isa_avx2: return "avx2";
  case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
  case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
  case dnnl_cpu_isa_avx512_core: return "avx512_core";
  case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
  case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
  case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
  default: return "other";
  }
}

const char *cpu_dnnl_describe(cpu_dnnl *e) {
  const dnnl_version_t *v = dnnl_version();
  snprintf(e->desc, sizeof e->desc, "oneDNN %d.%d.%d, isa %s%s", v->major, v->minor, v->patch,
           isa_name(dnnl_get_effective_cpu_isa()), e->bf16 ? ", bf16" : "");
  return e->desc;
}

/* an exact post-op for our activation: 1 and the algorithm, or 0 */
static int act_post_op(cnn_act a, float alpha, dnnl_alg_kind_t *alg, float *pa, float *pb) {
  *pa = 0.0f;
  *pb = 0.0f;
  switch (a) {
  case CNN_ACT_RELU: *alg = dnnl_eltwise_relu; return 1;
  case CNN_ACT_LEAKY: *alg = dnnl_eltwise_relu; *pa = alpha; return 1;
  case CNN_ACT_SIGMOID: *alg = dnnl_eltwise_logistic; return 1;
  case CNN_ACT_TANH: *alg = dnnl_eltwise_tanh; return 1;
  case CNN_ACT_GELU: *alg = dnnl_eltwise_gelu_erf; return 1;
  case CNN_ACT_RELU6: *alg = dnnl_eltwise_clip; *pb = 6.0f; return 1;
  default: return 0; /* LINEAR needs none; RAMP has no oneDNN equivalent */
  }
}

static cnn_status buf_alloc(size_t bytes, void **out) {
  return cpu_alloc_aligned(bytes ? bytes : 1, "dnnl buffer", out);
}

/* Geometry in oneDNN's terms. Our bottom/right padding is implied by oh/ow; an output
 * that leaves input rows unread (floor division) has a negative implied pad, which is
 * the same conv as pad 0 when that still gives oh. */
static int geometry(const cnn_conv_desc *d, dnnl_dims_t strides, dnnl_dims_t dil,
                    dnnl_dims_t pl, dnnl_dims_t pr) {
  int kr = (d->r - 1) * d->dil_h + 1, ks = (d->s - 1) * d->dil_w + 1;
  long prh = (long)(d->oh - 1) * d->stride_h + kr - d->h - d->pad_h;
  long prw = (long)(d->ow - 1) * d->stride_w + ks - d->w - d->pad_w;
  if (prh < 0 && (d->h + d->pad_h - kr) / d->stride_h + 1 == d->oh) prh = 0;
  if (prw < 0 && (d->w + d->pad_w - ks) / d->stride_w + 1 == d->ow) prw = 0;
  if (prh < 0 || prw < 0) return 0;
  strides[0] = d->stride_h;
  strides[1] = d->stride_w;
  dil[0] = d->dil_h - 1;
  dil[1] = d->dil_w - 1;
  pl[0] = d->pad_h;
  pl[1] = d->pad_w;
  pr[0] = prh;
  pr[1] = prw;
  return 1;
}

static dnnl_status_t md_act(dnnl_memory_desc_t *md, int n, int c, int h, int w,
                            dnnl_data_type_t dt) {
  dnnl_dims_t dims = {n, c, h, w};
  return dnnl_memory_desc_init_by_tag(md, 4, dims, dt, dnnl_nhwc);
}

/* weights: ours (KRSC) or `any` */
static dnnl_status_t md_wei(dnnl_memory_desc_t *md, const cnn_conv_desc *d, dnnl_data_type_t dt,
                            int any) {
  if (d->groups == 1) {
    dnnl_dims_t dims = {d->k, d->c, d->r, d->s};
    return dnnl_memory_desc_init_by_tag(md, 4, dims, dt, any ? dnnl_format_tag_any : dnnl_ohwi);
  }
  dnnl_dims_t dims = {d->groups, d->k / d->groups, d->c / d->groups, d->r, d->s};
  return dnnl_memory_desc_init_by_tag(md, 5, dims, dt, any ? dnnl_format_tag_any : dnnl_gohwi);
}

static dnnl_status_t make_reorder(cpu_dnnl *e, const dnnl_memory_desc_t *from,
                                  const dnnl_memory_desc_t *to, dnnl_primitive_t *out) {
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_status_t s = dnnl_primitive_attr_create(&attr);
  if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, from, e->eng, to, e->eng, attr);
  if (s == dnnl_success) s = dnnl_primitive_create(out, pd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return s;
}

/* scratchpad bytes of a primitive, from its descriptor */
static size_t pd_scratch(const_dnnl_primitive_desc_t pd) {
  const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  return md ? dnnl_memory_desc_get_size(md) : 0;
}

static size_t prim_scratch(dnnl_primitive_t p) {
  const_dnnl_primitive_desc_t pd = NULL;
  if (!p || dnnl_primitive_get_primitive_desc(p, &pd) != dnnl_success) return 0;
  return pd_scratch(pd);
}

static cnn_status grow(void **buf, size_t *have, size_t need) {
  if (need <= *have) return CNN_OK;
  void *nb;
  CNN_TRY(buf_alloc(need, &nb));
  free(*buf);
  *buf = nb;
  *have = need;
  return CNN_OK;
}

/* Build the primitive of a key (p's key fields set). */
static cnn_status prim_build(cpu_dnnl *e, prim *p) {
  const cnn_conv_desc *d = &p->d;
  cnn_status st = CNN_OK;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t fpd = NULL, pd = NULL;
  dnnl_convolution_desc_t fdesc, desc;
  dnnl_dims_t strides, dil, pl, pr;
  if (!geometry(d, strides, dil, pl, pr))
    return cnn_error(CNN_UNSUPPORTED, "cpu dnnl: output %dx%d needs input padding oneDNN lacks",
                     d->oh, d->ow);
  const int bf = cpu_dnnl_uses_bf16(e, d);
  const dnnl_data_type_t adt = bf ? dnnl_bf16 : dnnl_f32; /* operand type */
  const int any = p->variant == CPU_DNNL_ANY;
  dnnl_memory_desc_t x_op, y_op, w_op, b_md;
  DN(md_act(&p->x_md, d->n, d->c, d->h, d->w, dnnl_f32), "x desc");
  DN(md_act(&p->y_md, d->n, d->k, d->oh, d->ow, dnnl_f32), "y desc");
  DN(md_wei(&p->w_md, d, dnnl_f32, 0), "w desc");
  {
    dnnl_dims_t bd = {d->k};
    DN(dnnl_memory_desc_init_by_tag(&p->b_md, 1, bd, dnnl_f32, dnnl_a), "bias desc");
  }
  memset(&b_md, 0, sizeof b_md);
  if (p->with_bias) b_md = p->b_md;
  /* operands of the products: bf16 copies where bf16 runs; outputs stay f32 */
  DN(md_act(&x_op, d->n, d->c, d->h, d->w, p->dir == CNN_CONV_BWD_DATA ? dnnl_f32 : adt), "x op");
  DN(md_act(&y_op, d->n, d->k, d->oh, d->ow, p->dir == CNN_CONV_FWD ? dnnl_f32 : adt), "y op");
  DN(md_wei(&w_op, d, p->dir == CNN_CONV_BWD_FILTER ? dnnl_f32 : adt, any), "w op");

  DN(dnnl_primitive_attr_create(&attr), "attr");
  DN(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode");
  p->post_act = CNN_ACT_LINEAR;
  if (p->dir == CNN_CONV_FWD && p->act != CNN_ACT_LINEAR) {
    dnnl_alg_kind_t alg;
    float pa, pb;
    if (act_post_op((cnn_act)p->act, p->alpha, &alg, &pa, &pb)) {
      DN(dnnl_post_ops_create(&po), "post-ops");
      DN(dnnl_post_ops_append_eltwise(po, 1.0f, alg, pa, pb), "eltwise post-op");
      DN(dnnl_primitive_attr_set_post_ops(attr, po), "set post-ops");
    } else {
      p->post_act = p->act;
    }
  }

  if (p->dir == CNN_CONV_FWD) {
    DN(dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference,
                                                  dnnl_convolution_direct, &x_op, &w_op,
                                                  p->with_bias ? &b_md : NULL, &y_op, strides,
                                                  dil, pl, pr), "conv fwd desc");
    DN(dnnl_primitive_desc_create(&pd, &desc, attr, e->eng, NULL), "conv fwd");
  } else {
    /* backward passes need the forward one as a hint: operands of the operand type */
    dnnl_primitive_attr_t fattr = NULL;
    dnnl_memory_desc_t xh, wh, yh;
    dnnl_status_t s = dnnl_primitive_attr_create(&fattr);
    if (s == dnnl_success) s = md_act(&xh, d->n, d->c, d->h, d->w, adt);
    if (s == dnnl_success) s = md_act(&yh, d->n, d->k, d->oh, d->ow, adt);
    if (s == dnnl_success) s = md_wei(&wh, d, adt, any);
    if (s == dnnl_success)
      s = dnnl_dilated_convolution_forward_desc_init(
          &fdesc, dnnl_forward_training, dnnl_convolution_direct, &xh, &wh,
          p->dir == CNN_CONV_BWD_FILTER && p->with_bias ? &p->b_md : NULL, &yh, strides, dil, pl,
          pr);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&fpd, &fdesc, fattr, e->eng, NULL);
    if (fattr) dnnl_primitive_attr_destroy(fattr);
    DN(s, "conv fwd hint");
    if (p->dir == CNN_CONV_BWD_DATA) {
      DN(dnnl_dilated_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &x_op,
                                                          &w_op, &y_op, strides, dil, pl, pr),
         "conv bwd-data desc");
      /* accumulate with a sum post-op where an implementation takes one */
      dnnl_primitive_attr_t sattr = NULL;
      dnnl_post_ops_t spo = NULL;
      s = dnnl_primitive_attr_create(&sattr);
      if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(sattr, dnnl_scratchpad_mode_user);
      if (s == dnnl_success) s = dnnl_post_ops_create(&spo);
      if (s == dnnl_success) s = dnnl_post_ops_append_sum(spo, 1.0f);
      if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(sattr, spo);
      if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &desc, sattr, e->eng, fpd);
      if (spo) dnnl_post_ops_destroy(spo);
      if (sattr) dnnl_primitive_attr_destroy(sattr);
      p->sum = s == dnnl_success;
      if (!p->sum) DN(dnnl_primitive_desc_create(&pd, &desc, attr, e->eng, fpd), "conv bwd-data");
    } else {
      DN(dnnl_dilated_convolution_backward_weights_desc_init(
             &desc, dnnl_convolution_direct, &x_op, &w_op, p->with_bias ? &p->b_md : NULL, &y_op,
             strides, dil, pl, pr),
         "conv bwd-filter desc");
      DN(dnnl_primitive_desc_create(&pd, &desc, attr, e->eng, fpd), "conv bwd-filter");
    }
  }
  {
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
      snprintf(p->impl, sizeof p->impl, "%s", impl);
  }
  /* oneDNN's reference loops ("ref:any") are its last resort, 100-2000x slower than
   * ours (measured: resnet9's 3x3 64->128 with plain weights, 18 s a call): refused */
  if (!strncmp(p->impl, "ref", 3)) {
    st = cnn_error(CNN_UNSUPPORTED, "cpu dnnl: only oneDNN's reference implementation takes "
                   "this conv (%s)", p->impl);
    goto out;
  }
  p->scratch = pd_scratch(pd);
  p->cw_md = *dnnl_primitive_desc_query_md(
      pd, p->dir == CNN_CONV_BWD_FILTER ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
  DN(dnnl_primitive_create(&p->conv, pd), "conv primitive");
  /* weights: a reorder unless the conv takes (gives) ours as they are */
  if (!dnnl_memory_desc_equal(&p->cw_md, &p->w_md)) {
    if (p->dir == CNN_CONV_BWD_FILTER)
      DN(make_reorder(e, &p->cw_md, &p->w_md, &p->w_reorder), "weight reorder");
    else
      DN(make_reorder(e, &p->w_md, &p->cw_md, &p->w_reorder), "weight reorder");
    size_t wb = dnnl_memory_desc_get_size(&p->cw_md);
    if ((st = buf_alloc(wb, &p->wbuf)) != CNN_OK) goto out;
    size_t rs = prim_scratch(p->w_reorder);
    if (rs > p->scratch) p->scratch = rs;
  }
  if (bf) { /* f32 -> bf16 copies of the activation operands */
    const int fromx = p->dir != CNN_CONV_BWD_DATA;
    p->ca_md = fromx ? x_op : y_op;
    DN(make_reorder(e, fromx ? &p->x_md : &p->y_md, &p->ca_md, &p->a_reorder), "bf16 reorder");
    if (prim_scratch(p->a_reorder) > p->scratch) p->scratch = prim_scratch(p->a_reorder);
    if ((st = buf_alloc(dnnl_memory_desc_get_size(&p->ca_md), &p->abuf)) != CNN_OK) goto out;
    if (p->dir == CNN_CONV_BWD_FILTER) {
      p->ca2_md = y_op;
      DN(make_reorder(e, &p->y_md, &p->ca2_md, &p->a2_reorder), "bf16 reorder");
      if (prim_scratch(p->a2_reorder) > p->scratch) p->scratch = prim_scratch(p->a2_reorder);
      if ((st = buf_alloc(dnnl_memory_desc_get_size(&p->ca2_md), &p->a2buf)) != CNN_OK) goto out;
    }
  }
  if ((st = grow(&e->scratch, &e->scratch_bytes, p->scratch)) != CNN_OK) goto out;
out:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return st;
}

static int key_eq(const prim *p, const cnn_conv_desc *d, int dir, int variant, int with_bias,
                  int act, float alpha, int threads) {
  return p->dir == dir && p->variant == variant && p->with_bias == with_bias && p->act == act &&
         p->alpha == alpha && p->threads == threads && !memcmp(&p->d, d, sizeof *d);
}

/* the cached primitive of a key, built on first use */
static cnn_status get_prim(cpu_dnnl *e, const cnn_conv_desc *d, int dir, int variant,
                           int with_bias, cnn_act act, float alpha, prim **out) {
  *out = NULL;
  if (!e) return cnn_error(CNN_UNSUPPORTED, "cpu dnnl: no oneDNN engine");
  if (act == CNN_ACT_LINEAR || act == CNN_ACT_RELU) alpha = 0.0f;
  const int threads = cpu_max_threads();
  for (int i = 0; i < e->np; i++)
    if (key_eq(e->p[i], d, dir, variant, with_bias, (int)act, alpha, threads)) {
      if (e->p[i]->refused)
        return e->p[i]->impl[0]
                   ? cnn_error(CNN_UNSUPPORTED, "cpu dnnl: only oneDNN's reference "
                               "implementation takes this conv (%s)", e->p[i]->impl)
                   : cnn_error(CNN_UNSUPPORTED, "cpu dnnl: oneDNN does not take this conv");
      *out = e->p[i];
      return CNN_OK;
    }
  if (e->np == e->cap) {
    int nc = e->cap ? 2 * e->cap : 16;
    prim **np = realloc(e->p, (size_t)nc * sizeof *np);
    if (!np) return cnn_error(CNN_ERR_NOMEM, "cpu dnnl: out of host memory");
    e->p = np;
    e->cap = nc;
  }
  prim *p = calloc(1, sizeof *p);
  if (!p) return cnn_error(CNN_ERR_NOMEM, "cpu dnnl: out of host memory");
  memcpy(&p->d, d, sizeof *d);
  p->dir = dir;
  p->variant = variant;
  p->with_bias = with_bias;
  p->act = (int)act;
  p->alpha = alpha;
  p->threads = threads;
  cnn_status st = prim_build(e, p);
  if (st == CNN_UNSUPPORTED) { /* remembered as refused, without its buffers */
    prim *q = calloc(1, sizeof *q);
    if (q) {
      memcpy(q, p, sizeof *q);
      q->conv = q->w_reorder = q->a_reorder = q->a2_reorder = NULL;
      q->wbuf = q->abuf = q->a2buf = NULL;
      q->refused = 1;
      if (strncmp(q->impl, "ref", 3)) q->impl[0] = 0;
      e->p[e->np++] = q;
    }
  }
  if (st != CNN_OK) {
    prim_free(p);
    return st;
  }
  e->p[e->np++] = p;
  *out = p;
  return CNN_OK;
}

cnn_status cpu_dnnl_check(cpu_dnnl *e, const cnn_conv_desc *d, cnn_conv_dir dir, int variant) {
  prim *p;
  return get_prim(e, d, (int)dir, variant, dir != CNN_CONV_BWD_DATA, CNN_ACT_LINEAR, 0.0f, &p);
}

const char *cpu_dnnl_impl(cpu_dnnl *e, const cnn_conv_desc *d, cnn_conv_dir dir, int variant) {
  prim *p;
  if (get_prim(e, d, (int)dir, variant, dir != CNN_CONV_BWD_DATA, CNN_ACT_LINEAR, 0.0f, &p) !=
      CNN_OK)
    return NULL;
  return p->impl;
}

/* ---- execution ---- */

typedef struct run_args {
  dnnl_exec_arg_t a[8];
  dnnl_memory_t m[8];
  int n;
} run_args;

static dnnl_status_t arg(cpu_dnnl *e, run_args *r, int which, const dnnl_memory_desc_t *md,
                         const void *ptr) {
  dnnl_memory_t m;
  dnnl_status_t s = dnnl_memory_create(&m, md, e->eng, (void *)ptr);
  if (s != dnnl_success) return s;
  r->a[r->n].arg = which;
  r->a[r->n].memory = m;
  r->m[r->n++] = m;
  return dnnl_success;
}

static void args_free(run_args *r) {
  for (int i = 0; i < r->n; i++) dnnl_memory_destroy(r->m[i]);
  r->n = 0;
}

/* run primitive prim on args plus the shared scratchpad */
static cnn_status exec(cpu_dnnl *e, dnnl_primitive_t pr, run_args *r, const char *what) {
  cnn_status st = CNN_OK;
  const_dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t s = dnnl_primitive_get_primitive_desc(pr, &pd);
  const dnnl_memory_desc_t *smd =
      s == dnnl_success ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
  if (s == dnnl_success && smd && dnnl_memory_desc_get_size(smd))
    s = arg(e, r, DNNL_ARG_SCRATCHPAD, smd, e->scratch);
  if (s == dnnl_success) s = dnnl_primitive_execute(pr, e->stream, r->n, r->a);
  if (s == dnnl_success) s = dnnl_stream_wait(e->stream);
  if (s != dnnl_success) st = dnnl_err(s, what);
  args_free(r);
  return st;
}

/* one reorder from -> to */
static cnn_status reorder(cpu_dnnl *e, dnnl_primitive_t pr, const dnnl_memory_desc_t *fmd,
                          const void *from, const dnnl_memory_desc_t *tmd, void *to) {
  run_args r = {.n = 0};
  dnnl_status_t s = arg(e, &r, DNNL_ARG_FROM, fmd, from);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_TO, tmd, to);
  if (s != dnnl_success) {
    args_free(&r);
    return dnnl_err(s, "reorder memory");
  }
  return exec(e, pr, &r, "reorder");
}

/* weights for fwd / bwd-data: ours, or reordered into the conv's layout (and type) */
static cnn_status weights_in(cpu_dnnl *e, prim *p, const float *w, const void **wc) {
  *wc = w;
  if (!p->w_reorder) return CNN_OK;
  CNN_TRY(reorder(e, p->w_reorder, &p->w_md, w, &p->cw_md, p->wbuf));
  *wc = p->wbuf;
  return CNN_OK;
}

size_t cpu_dnnl_fwd_wbytes(cpu_dnnl *e, const cnn_conv_desc *d, int variant, int with_bias,
                           cnn_act act, float alpha) {
  prim *p;
  if (get_prim(e, d, CNN_CONV_FWD, variant, with_bias, act, alpha, &p) != CNN_OK) {
    cnn_error_clear();
    return 0;
  }
  return p->w_reorder ? dnnl_memory_desc_get_size(&p->cw_md) : 0;
}

cnn_status cpu_dnnl_fwd(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *x,
                        const float *w, void *wpack, int fill, const float *bias, cnn_act act,
                        float alpha, float *y) {
  prim *p;
  CNN_TRY(get_prim(e, d, CNN_CONV_FWD, variant, bias != NULL, act, alpha, &p));
  if (d->n == 0 || d->oh == 0 || d->ow == 0) return CNN_OK;
  const void *wc, *xc = x;
  if (wpack && p->w_reorder) { /* kept reordered across calls: refilled when asked */
    if (fill) CNN_TRY(reorder(e, p->w_reorder, &p->w_md, w, &p->cw_md, wpack));
    wc = wpack;
  } else {
    CNN_TRY(weights_in(e, p, w, &wc));
  }
  if (p->a_reorder) {
    CNN_TRY(reorder(e, p->a_reorder, &p->x_md, x, &p->ca_md, p->abuf));
    xc = p->abuf;
  }
  run_args r = {.n = 0};
  dnnl_status_t s = arg(e, &r, DNNL_ARG_SRC, p->a_reorder ? &p->ca_md : &p->x_md, xc);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_WEIGHTS, &p->cw_md, wc);
  if (s == dnnl_success && bias) s = arg(e, &r, DNNL_ARG_BIAS, &p->b_md, bias);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_DST, &p->y_md, y);
  if (s != dnnl_success) {
    args_free(&r);
    return dnnl_err(s, "conv fwd memory");
  }
  CNN_TRY(exec(e, p->conv, &r, "conv fwd"));
  if (p->post_act != CNN_ACT_LINEAR)
    CNN_TRY(cpu_act_fwd(NULL, (cnn_act)p->post_act, alpha, (size_t)d->n * d->oh * d->ow * d->k, y, y));
  return CNN_OK;
}

cnn_status cpu_dnnl_bwd_data(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *dy,
                             const float *w, float *dx) {
  prim *p;
  CNN_TRY(get_prim(e, d, CNN_CONV_BWD_DATA, variant, 0, CNN_ACT_LINEAR, 0.0f, &p));
  if (d->n == 0 || d->oh == 0 || d->ow == 0) return CNN_OK;
  const size_t nx = (size_t)d->n * d->h * d->w * d->c;
  float *out = dx;
  if (!p->sum) { /* oneDNN overwrites diff_src: into scratch, then added */
    CNN_TRY(grow(&e->tmp, &e->tmp_bytes, nx * sizeof(float)));
    out = e->tmp;
  }
  const void *wc, *dyc = dy;
  CNN_TRY(weights_in(e, p, w, &wc));
  if (p->a_reorder) {
    CNN_TRY(reorder(e, p->a_reorder, &p->y_md, dy, &p->ca_md, p->abuf));
    dyc = p->abuf;
  }
  run_args r = {.n = 0};
  dnnl_status_t s = arg(e, &r, DNNL_ARG_DIFF_DST, p->a_reorder ? &p->ca_md : &p->y_md, dyc);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_WEIGHTS, &p->cw_md, wc);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_DIFF_SRC, &p->x_md, out);
  if (s != dnnl_success) {
    args_free(&r);
    return dnnl_err(s, "conv bwd-data memory");
  }
  CNN_TRY(exec(e, p->conv, &r, "conv bwd-data"));
  if (!p->sum) {
    const float *t = out;
#pragma omp parallel for simd schedule(static) if (nx >= CPU_PAR_MIN)
    for (size_t i = 0; i < nx; i++) dx[i] += t[i];
  }
  return CNN_OK;
}

cnn_status cpu_dnnl_bwd_filter(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *x,
                               const float *dy, float *dw, float *db) {
  prim *p;
  CNN_TRY(get_prim(e, d, CNN_CONV_BWD_FILTER, variant, db != NULL, CNN_ACT_LINEAR, 0.0f, &p));
  if (d->n == 0 || d->oh == 0 || d->ow == 0) { /* empty sums */
    memset(dw, 0, (size_t)d->k * d->r * d->s * (d->c / d->groups) * sizeof *dw);
    if (db) memset(db, 0, (size_t)d->k * sizeof *db);
    return CNN_OK;
  }
  const void *xc = x, *dyc = dy;
  if (p->a_reorder) {
    CNN_TRY(reorder(e, p->a_reorder, &p->x_md, x, &p->ca_md, p->abuf));
    CNN_TRY(reorder(e, p->a2_reorder, &p->y_md, dy, &p->ca2_md, p->a2buf));
    xc = p->abuf;
    dyc = p->a2buf;
  }
  void *dwc = p->w_reorder ? p->wbuf : (void *)dw;
  run_args r = {.n = 0};
  dnnl_status_t s = arg(e, &r, DNNL_ARG_SRC, p->a_reorder ? &p->ca_md : &p->x_md, xc);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_DIFF_DST, p->a_reorder ? &p->ca2_md : &p->y_md, dyc);
  if (s == dnnl_success) s = arg(e, &r, DNNL_ARG_DIFF_WEIGHTS, &p->cw_md, dwc);
  if (s == dnnl_success && db) s = arg(e, &r, DNNL_ARG_DIFF_BIAS, &p->b_md, db);
  if (s != dnnl_success) {
    args_free(&r);
    return dnnl_err(s, "conv bwd-filter memory");
  }
  CNN_TRY(exec(e, p->conv, &r, "conv bwd-filter"));
  if (p->w_reorder) CNN_TRY(reorder(e, p->w_reorder, &p->cw_md, p->wbuf, &p->w_md, dw));
  return CNN_OK;
}

#else /* !CNN_HAVE_DNNL */

cpu_dnnl *cpu_dnnl_create(void) { return NULL; }
void cpu_dnnl_destroy(cpu_dnnl *e) { (void)e; }
int cpu_dnnl_has_bf16(const cpu_dnnl *e) { (void)e; return 0; }
int cpu_dnnl_uses_bf16(const cpu_dnnl *e, const cnn_conv_desc *d) { (void)e; (void)d; return 0; }
const char *cpu_dnnl_describe(cpu_dnnl *e) { (void)e; return "not built"; }
static cnn_status none(void) {
  return cnn_error(CNN_UNSUPPORTED, "cpu: built without oneDNN (libdnnl-dev)");
}
cnn_status cpu_dnnl_check(cpu_dnnl *e, const cnn_conv_desc *d, cnn_conv_dir dir, int variant) {
  (void)e; (void)d; (void)dir; (void)variant;
  return none();
}
const char *cpu_dnnl_impl(cpu_dnnl *e, const cnn_conv_desc *d, cnn_conv_dir dir, int variant) {
  (void)e; (void)d; (void)dir; (void)variant;
  return NULL;
}
size_t cpu_dnnl_fwd_wbytes(cpu_dnnl *e, const cnn_conv_desc *d, int variant, int with_bias,
                           cnn_act act, float alpha) {
  (void)e; (void)d; (void)variant; (void)with_bias; (void)act; (void)alpha;
  return 0;
}
cnn_status cpu_dnnl_fwd(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *x,
                        const float *w, void *wpack, int fill, const float *bias, cnn_act act,
                        float alpha, float *y) {
  (void)e; (void)d; (void)variant; (void)x; (void)w; (void)wpack; (void)fill; (void)bias;
  (void)act; (void)alpha; (void)y;
  return none();
}
cnn_status cpu_dnnl_bwd_data(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *dy,
                             const float *w, float *dx) {
  (void)e; (void)d; (void)variant; (void)dy; (void)w; (void)dx;
  return none();
}
cnn_status cpu_dnnl_bwd_filter(cpu_dnnl *e, const cnn_conv_desc *d, int variant, const float *x,
                               const float *dy, float *dw, float *db) {
  (void)e; (void)d; (void)variant; (void)x; (void)dy; (void)dw; (void)db;
  return none();
}
#endif
