/* SpanDSP's DTMF receiver as a bench peer, compiled by bench/dtmf/run.py at run time.
 *
 * stdin: records of [uint32 sample count][that many int16 samples at 8 kHz], native endian.
 * stdout: one line per record, "INDEX DIGITS" (digits may be empty). Each record gets a
 * fresh receiver with SpanDSP's defaults, fed in 160-sample (20 ms) blocks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <spandsp.h>

static char found[4096];
static int nfound;

static void on_digits(void *user_data, const char *digits, int len)
{
    (void) user_data;
    for (int i = 0; i < len && nfound < (int) sizeof(found) - 1; i++)
        found[nfound++] = digits[i];
}

int main(void)
{
    uint32_t count;
    int16_t *samples = NULL;
    for (int index = 0; fread(&count, sizeof count, 1, stdin) == 1; index++) {
        samples = realloc(samples, (count ? count : 1) * sizeof *samples);
        if (samples == NULL || fread(samples, sizeof *samples, count, stdin) != count) {
            fprintf(stderr, "spandsp_dtmf: short record %d\n", index);
            return 1;
        }
        dtmf_rx_state_t *rx = dtmf_rx_init(NULL, on_digits, NULL);
        nfound = 0;
        for (uint32_t at = 0; at < count; at += 160) {
            uint32_t n = count - at < 160 ? count - at : 160;
            dtmf_rx(rx, samples + at, (int) n);
        }
        found[nfound] = '\0';
        printf("%d %s\n", index, found);
        dtmf_rx_free(rx);
    }
    free(samples);
    return 0;
}
