// stb_image_write's implementation, for the tests that write their own PNG and JPEG files;
// compiled without our warnings and without UBSan (third-party code: its JPEG writer
// left-shifts negative values).
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
