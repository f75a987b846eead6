// gen writes the golden vectors of package quant (see golden_test.go for the
// file format). It links against a prebuilt libggml-base.so and calls ggml's
// reference quantizers and dequantizers; build and run it with gen.sh.
//
// The output depends only on SEED and on ggml: the inputs come from a fixed
// splitmix64 stream.

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEED 0x5354524154415131ull // "STRATAQ1"
#define N 2048                     // elements per file: 8 super-blocks of 256
#define VERSION 1

// ggml entry points (libggml-base.so). Blocks are passed as raw bytes.
typedef void (*quant_fn)(const float *x, void *y, int64_t k);
typedef void (*dequant_fn)(const void *x, float *y, int64_t k);

#define DECL(t)                                                  \
    void quantize_row_##t##_ref(const float *x, void *y, int64_t k); \
    void dequantize_row_##t(const void *x, float *y, int64_t k);
DECL(q4_0)
DECL(q4_1)
DECL(q5_0)
DECL(q5_1)
DECL(q8_0)
DECL(q2_K)
DECL(q3_K)
DECL(q4_K)
DECL(q5_K)
DECL(q6_K)
DECL(q8_K)
void quantize_row_q8_1_ref(const float *x, void *y, int64_t k);
uint16_t ggml_fp32_to_fp16(float x);
float ggml_fp16_to_fp32(uint16_t h);
void ggml_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n);
void ggml_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n);
void ggml_fp32_to_bf16_row_ref(const float *x, uint16_t *y, int64_t n);
void ggml_bf16_to_fp32_row(const uint16_t *x, float *y, int64_t n);

static void quant_f16(const float *x, void *y, int64_t k) { ggml_fp32_to_fp16_row(x, y, k); }
static void dequant_f16(const void *x, float *y, int64_t k) { ggml_fp16_to_fp32_row(x, y, k); }
static void quant_bf16(const float *x, void *y, int64_t k) { ggml_fp32_to_bf16_row_ref(x, y, k); }
static void dequant_bf16(const void *x, float *y, int64_t k) { ggml_bf16_to_fp32_row(x, y, k); }

// ggml has no dequantizer for Q8_1 (it is only a dot-product operand). This
// one has the meaning of the format, written the way dequantize_row_q8_0 is:
// y = d * q, the sum field s is not read.
static void dequant_q8_1(const void *x, float *y, int64_t k) {
    const uint8_t *b = x;
    for (int64_t i = 0; i < k / 32; i++, b += 36) {
        uint16_t h;
        memcpy(&h, b, 2);
        const float d = ggml_fp16_to_fp32(h);
        for (int j = 0; j < 32; j++) {
            y[i * 32 + j] = (int8_t)b[4 + j] * d;
        }
    }
}

// Where a block keeps its scales, so that random blocks get sane ones.
enum { SCALE_F16, SCALE_F32 };
struct scale_field {
    int off;
    int kind;
    int nonneg; // mins are stored as positive dmin in the K-quants
};

struct type_desc {
    const char *name;
    int id;        // ggml type id
    int blck;      // elements per block
    int size;      // bytes per block
    quant_fn q;
    dequant_fn dq;
    int nscales;
    struct scale_field sc[2];
    int plain_f16; // every element is an fp16 value
};

static const struct type_desc types[] = {
    {"F16", 1, 1, 2, quant_f16, dequant_f16, 0, {{0}}, 1},
    {"BF16", 30, 1, 2, quant_bf16, dequant_bf16, 0, {{0}}, 0},
    {"Q4_0", 2, 32, 18, quantize_row_q4_0_ref, dequantize_row_q4_0, 1, {{0, SCALE_F16, 0}}, 0},
    {"Q4_1", 3, 32, 20, quantize_row_q4_1_ref, dequantize_row_q4_1, 2, {{0, SCALE_F16, 0}, {2, SCALE_F16, 0}}, 0},
    {"Q5_0", 6, 32, 22, quantize_row_q5_0_ref, dequantize_row_q5_0, 1, {{0, SCALE_F16, 0}}, 0},
    {"Q5_1", 7, 32, 24, quantize_row_q5_1_ref, dequantize_row_q5_1, 2, {{0, SCALE_F16, 0}, {2, SCALE_F16, 0}}, 0},
    {"Q8_0", 8, 32, 34, quantize_row_q8_0_ref, dequantize_row_q8_0, 1, {{0, SCALE_F16, 0}}, 0},
    {"Q8_1", 9, 32, 36, quantize_row_q8_1_ref, dequant_q8_1, 2, {{0, SCALE_F16, 0}, {2, SCALE_F16, 0}}, 0},
    {"Q2_K", 10, 256, 84, quantize_row_q2_K_ref, dequantize_row_q2_K, 2, {{80, SCALE_F16, 1}, {82, SCALE_F16, 1}}, 0},
    {"Q3_K", 11, 256, 110, quantize_row_q3_K_ref, dequantize_row_q3_K, 1, {{108, SCALE_F16, 0}}, 0},
    {"Q4_K", 12, 256, 144, quantize_row_q4_K_ref, dequantize_row_q4_K, 2, {{0, SCALE_F16, 1}, {2, SCALE_F16, 1}}, 0},
    {"Q5_K", 13, 256, 176, quantize_row_q5_K_ref, dequantize_row_q5_K, 2, {{0, SCALE_F16, 1}, {2, SCALE_F16, 1}}, 0},
    {"Q6_K", 14, 256, 210, quantize_row_q6_K_ref, dequantize_row_q6_K, 1, {{208, SCALE_F16, 0}}, 0},
    {"Q8_K", 15, 256, 292, quantize_row_q8_K_ref, dequantize_row_q8_K, 1, {{0, SCALE_F32, 0}}, 0},
};

static uint64_t rng_state;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// uniform in [0, 1)
static double uniform(void) { return (next_u64() >> 11) * 0x1.0p-53; }

static double gauss(void) {
    double u = uniform(), v = uniform();
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

// make_input fills x[N] with 8 super-blocks of different character.
static void make_input(float *x) {
    for (int i = 0; i < N; i++) {
        const int sb = i / 256, j = i % 256;
        float v = 0;
        switch (sb) {
        case 0: // unit gaussian
            v = gauss();
            break;
        case 1: // weight-like scale
            v = 0.02 * gauss();
            break;
        case 2: // all zeros
            v = 0;
            break;
        case 3: // one big outlier, and a zero sub-block of 32
            v = (j >= 128 && j < 160) ? 0 : gauss();
            if (j == 37) v = 50;
            if (j == 200) v = -30;
            break;
        case 4: // tiny values: small normals, then subnormals
            if (j < 64) v = 1e-6 * gauss();
            else if (j < 128) v = 1e-20 * gauss();
            else if (j < 192) v = 1e-39 * gauss();
            else v = (float)((int)(next_u64() % 17) - 8) * 0x1.0p-149f;
            break;
        case 5: // positive only, with a constant block
            v = (j < 32) ? 0.5f : uniform();
            break;
        case 6: // negative only
            v = -uniform() * 3;
            break;
        case 7: // wide magnitudes, both signs
            v = 300 * gauss();
            if (j % 64 == 5) v = -v;
            break;
        }
        x[i] = v;
    }
}

static float moderate_scale(int nonneg) {
    // |d| in [1e-4, 1e-1], log-uniform
    float d = (float)pow(10.0, -4.0 + 3.0 * uniform());
    if (!nonneg && (next_u64() & 1)) d = -d;
    return d;
}

// make_blocks fills nb blocks of t with random bytes and sane scales.
static void make_blocks(const struct type_desc *t, uint8_t *b, int nb) {
    for (int i = 0; i < nb * t->size; i++) b[i] = (uint8_t)next_u64();
    if (t->plain_f16) {
        // Random halves, but finite: no exponent 31.
        for (int i = 0; i < nb; i++) {
            if ((b[2 * i + 1] & 0x7c) == 0x7c) b[2 * i + 1] &= 0xbf;
        }
        return;
    }
    if (t->blck == 1) {
        // BF16: finite too, no exponent 255.
        for (int i = 0; i < nb; i++) {
            if ((b[2 * i + 1] & 0x7f) == 0x7f && (b[2 * i] & 0x80)) b[2 * i + 1] &= 0xbf;
        }
        return;
    }
    for (int i = 0; i < nb; i++) {
        uint8_t *blk = b + i * t->size;
        for (int s = 0; s < t->nscales; s++) {
            const struct scale_field *f = &t->sc[s];
            const float d = moderate_scale(f->nonneg);
            if (f->kind == SCALE_F32) {
                memcpy(blk + f->off, &d, 4);
            } else {
                uint16_t h = ggml_fp32_to_fp16(d);
                memcpy(blk + f->off, &h, 2);
            }
        }
    }
}

static void put_u32(FILE *f, uint32_t v) {
    uint8_t b[4] = {v, v >> 8, v >> 16, v >> 24};
    fwrite(b, 1, 4, f);
}

static void check_finite(const char *name, const char *what, const float *y, int n) {
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            fprintf(stderr, "gen: %s %s: output %d is not finite\n", name, what, i);
            exit(1);
        }
    }
}

static void write_file(const char *dir, const char *name, const char *suffix, uint32_t kind,
                       const struct type_desc *t, const float *in, const uint8_t *blocks,
                       size_t nbytes, const float *out) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s.bin", dir, name, suffix);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite("SQGV", 1, 4, f);
    put_u32(f, VERSION);
    put_u32(f, (uint32_t)t->id);
    put_u32(f, kind);
    put_u32(f, N);
    put_u32(f, (uint32_t)nbytes);
    if (in) fwrite(in, sizeof(float), N, f); // little-endian host
    fwrite(blocks, 1, nbytes, f);
    fwrite(out, sizeof(float), N, f);
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen OUTDIR\n");
        return 2;
    }
    static float x[N], y[N];
    static uint8_t blocks[N * 4];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const struct type_desc *t = &types[k];
        const int nb = N / t->blck;
        const size_t nbytes = (size_t)nb * t->size;

        // Each type gets its own stream, so adding a type changes no other file.
        rng_state = SEED ^ (uint64_t)t->id * 0x100000001b3ull;
        make_input(x);
        memset(blocks, 0, sizeof blocks);
        t->q(x, blocks, N);
        t->dq(blocks, y, N);
        check_finite(t->name, "quant", y, N);
        write_file(argv[1], t->name, "quant", 1, t, x, blocks, nbytes, y);

        make_blocks(t, blocks, nb);
        t->dq(blocks, y, N);
        check_finite(t->name, "dequant", y, N);
        write_file(argv[1], t->name, "dequant", 2, t, NULL, blocks, nbytes, y);
    }
    return 0;
}
