/* Loads an excite bundle and prints u and v at t = 0, 5, ..., 25.
 * Build: cc -std=c99 -Iinclude predict.c -Ltarget/release -lexcite -o predict
 * Run:   LD_LIBRARY_PATH=target/release ./predict runs/quick/package/quick */
#include <stdio.h>
#include <stdlib.h>
#include "excite.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
        return 2;
    }
    ExciteSurrogate *s = excite_surrogate_load(argv[1]);
    if (!s) {
        fprintf(stderr, "error: %s\n", excite_last_error());
        return 1;
    }
    size_t n_in = excite_surrogate_inputs(s), n_out = excite_surrogate_outputs(s);
    if (n_in != 1) {
        fprintf(stderr, "this example feeds t only; the bundle takes %zu inputs\n", n_in);
        excite_surrogate_free(s);
        return 1;
    }
    enum { ROWS = 6 };
    float x[ROWS], *y = malloc(sizeof(float) * ROWS * n_out);
    for (int i = 0; i < ROWS; i++) x[i] = 5.0f * (float)i;
    if (excite_surrogate_predict(s, x, ROWS * n_in, ROWS, y, ROWS * n_out) != 0) {
        fprintf(stderr, "error: %s\n", excite_last_error());
        free(y);
        excite_surrogate_free(s);
        return 1;
    }
    printf("# engine: %s\n", excite_surrogate_engine(s));
    for (int i = 0; i < ROWS; i++) {
        printf("%.9g", x[i]);
        for (size_t j = 0; j < n_out; j++) printf(" %.9g", y[i * n_out + j]);
        printf("\n");
    }
    free(y);
    excite_surrogate_free(s);
    return 0;
}
