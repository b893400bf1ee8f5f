/* SpanDSP's caller-ID receiver (adsi_rx) as a bench peer, compiled by bench/callerid/run.py.
 *
 * argv[1]: the standard: "class" (Bell 202), "clip" (ETSI V.23) or "dtmf" (CLIP DTMF).
 * stdin: records of [uint32 sample count][that many int16 samples at 8 kHz], native endian.
 * stdout: for each message, "INDEX MSG TYPE= FIELD=VALUE ..." (codes and values in hex);
 * then "INDEX END" after each record. Each record gets a fresh receiver with
 * SpanDSP's defaults, fed in 160-sample (20 ms) blocks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spandsp.h>

static int record;
static int standard;
static adsi_rx_state_t *rx;

static void on_message(void *user_data, const uint8_t *msg, int len)
{
    (void) user_data;
    uint8_t field_type;
    const uint8_t *body;
    int field_len;
    int pos = -1;
    printf("%d MSG", record);
    do {
        pos = adsi_next_field(rx, msg, len, pos, &field_type, &body, &field_len);
        if (pos > 0 && field_len >= 0) {
            printf(" %02x=", field_type);
            for (int i = 0; i < field_len; i++)
                printf("%02x", body[i]);
        } else if (pos > 0) {
            printf(" %02x", field_type);
        }
    } while (pos > 0);
    putchar('\n');
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    standard = strcmp(argv[1], "class") == 0 ? ADSI_STANDARD_CLASS
             : strcmp(argv[1], "clip") == 0 ? ADSI_STANDARD_CLIP
             : ADSI_STANDARD_CLIP_DTMF;
    uint32_t count;
    int16_t *samples = NULL;
    for (record = 0; fread(&count, sizeof count, 1, stdin) == 1; record++) {
        samples = realloc(samples, (count ? count : 1) * sizeof *samples);
        if (samples == NULL || fread(samples, sizeof *samples, count, stdin) != count) {
            fprintf(stderr, "spandsp_adsi: short record %d\n", record);
            return 1;
        }
        rx = adsi_rx_init(NULL, standard, on_message, NULL);
        for (uint32_t at = 0; at < count; at += 160) {
            uint32_t n = count - at < 160 ? count - at : 160;
            adsi_rx(rx, samples + at, (int) n);
        }
        printf("%d END\n", record);
        fflush(stdout);
        adsi_rx_free(rx);
    }
    free(samples);
    return 0;
}
