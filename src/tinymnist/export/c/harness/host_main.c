/* Host test driver: read N images (784 bytes each) from stdin, write N x TINYMNIST_CLASSES int32
 * scores (native byte order) and then N predicted digits (one byte each) to stdout. */
#include <stdio.h>

#include "tinymnist_model.h"

int main(void)
{
    uint8_t image[784];
    int32_t scores[TINYMNIST_CLASSES];
    static unsigned char digits[1 << 20];
    size_t n = 0, i;
    while (n < sizeof digits && fread(image, 1, sizeof image, stdin) == sizeof image) {
        tinymnist_scores(image, scores);
        if (fwrite(scores, sizeof scores, 1, stdout) != 1) {
            return 1;
        }
        digits[n++] = (unsigned char)tinymnist_predict(image);
    }
    for (i = 0; i < n; i++) {
        putchar(digits[i]);
    }
    return fflush(stdout) != 0;
}
