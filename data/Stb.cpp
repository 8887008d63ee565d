// stb_image and stb_image_resize (Debian's libstb-dev headers): their implementations,
// compiled once, here, without our warnings (and without UBSan in sanitized builds: this is
// third-party code; AddressSanitizer still checks it).
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_resize.h>
