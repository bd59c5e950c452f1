// Prints the orders libstdc++'s std::sort (and, with -DPARTIAL,
// std::partial_sort over the whole range: the introsort's heap-sort
// fallback) gives tie-heavy key sets, sorting indices by key[a] > key[b]
// as ggml's argsort does. The expected values of the tests in
// src/ops/moe.rs came from this program (g++ 12):
//   g++ -O2 scripts/libstdcxx_sort_orders.cpp -o /tmp/s && /tmp/s
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
    uint64_t seed = 7;
    for (int n : {17, 20, 40, 128, 300}) {
        for (int d : {2, 3, 5, 1000}) {
            std::vector<float> key(n);
            for (int i = 0; i < n; i++) {
                seed = seed * 6364136223846793005ULL + 1;
                key[i] = (float)((seed >> 33) % d);
            }
            std::vector<int32_t> idx(n);
            for (int i = 0; i < n; i++) idx[i] = i;
            auto desc = [&](int32_t a, int32_t b) { return key[a] > key[b]; };
#ifdef PARTIAL
            std::partial_sort(idx.begin(), idx.end(), idx.end(), desc);
#else
            std::sort(idx.begin(), idx.end(), desc);
#endif
            printf("%d %d:", n, d);
            for (int i = 0; i < n; i++) printf(" %d", idx[i]);
            printf("\n");
        }
    }
}
