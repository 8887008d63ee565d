// load_image: PNG, JPEG, BMP and GIF through stb_image, channel conversion, resizing, and clear errors.
#include <gtest/gtest.h>

#include <fstream>

#include "Fixtures.h"
#include "data/Image.h"

#include <stb_image_write.h>  // the tests write their own images (StbWrite.cpp)

using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// An RGB image, [H, W, 3] uint8 in stb's order, with distinct pixels.
std::vector<uint8_t> rgb_pixels(int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w * h * 3));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37) % 256);
  return px;
}

}  // namespace

TEST(Image, APngOfTheModelsSizeComesBackPixelForPixelAsCHW) {
  TempDir tmp;
  const auto px = rgb_pixels(5, 4);
  const auto file = tmp.path() / "a.png";
  ASSERT_TRUE(stbi_write_png(file.c_str(), 5, 4, 3, px.data(), 5 * 3));
  const auto img = mgpu::data::load_image(file, 3, 4, 5);
  ASSERT_EQ(img.sizes(), (torch::IntArrayRef{3, 4, 5}));
  EXPECT_EQ(img.dtype(), torch::kUInt8);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 5; ++x) {
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(img[c][y][x].item<int>(), px[static_cast<size_t>((y * 5 + x) * 3 + c)]);
      }
    }
  }
}

// The README names BMP and GIF besides PNG and JPEG.
TEST(Image, BmpAndGifFilesAreDecodedToo) {
  TempDir tmp;
  const auto px = rgb_pixels(5, 4);
  const auto bmp = tmp.path() / "a.bmp";
  ASSERT_TRUE(stbi_write_bmp(bmp.c_str(), 5, 4, 3, px.data()));
  const auto img = mgpu::data::load_image(bmp, 3, 4, 5);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(img[c][3][4].item<int>(), px[(3 * 5 + 4) * 3 + c]);

  // A 1x1 GIF whose one pixel is colour 0 of its table, white.
  const std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0,
                                    0xff, 0xff, 0xff, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0,
                                    0, 2, 2, 0x44, 0x01, 0, 0x3b};
  mgpu::testing::write_bytes(tmp.path() / "w.gif", gif);
  const auto white = mgpu::data::load_image(tmp.path() / "w.gif", 3, 2, 2);  // resized too
  EXPECT_TRUE(torch::all(white.eq(255)).item<bool>()) << white;
}

TEST(Image, ColourBecomesGreyForOneChannelModels) {
  TempDir tmp;
  const std::vector<uint8_t> px = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};  // 2x2
  const auto file = tmp.path() / "rgb.png";
  ASSERT_TRUE(stbi_write_png(file.c_str(), 2, 2, 3, px.data(), 2 * 3));
  const auto grey = mgpu::data::load_image(file, 1, 2, 2);
  ASSERT_EQ(grey.sizes(), (torch::IntArrayRef{1, 2, 2}));
  // stb's luma: (77 r + 150 g + 29 b) >> 8.
  EXPECT_EQ(grey[0][0][0].item<int>(), (77 * 255) >> 8);
  EXPECT_EQ(grey[0][0][1].item<int>(), (150 * 255) >> 8);
  EXPECT_EQ(grey[0][1][0].item<int>(), (29 * 255) >> 8);
  EXPECT_EQ(grey[0][1][1].item<int>(), 255);
}

TEST(Image, AnyOtherSizeIsResizedToTheModelsInput) {
  TempDir tmp;
  // A large JPEG whose left half is dark and right half bright keeps that layout at 32x32.
  const int w = 300, h = 200;
  std::vector<uint8_t> px(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c)
        px[static_cast<size_t>((y * w + x) * 3 + c)] = x < w / 2 ? 20 : 230;
    }
  }
  const auto file = tmp.path() / "big.jpg";
  ASSERT_TRUE(stbi_write_jpg(file.c_str(), w, h, 3, px.data(), 95));
  const auto img = mgpu::data::load_image(file, 3, 32, 32).to(torch::kInt32);
  ASSERT_EQ(img.sizes(), (torch::IntArrayRef{3, 32, 32}));
  EXPECT_LT(img.narrow(2, 0, 12).max().item<int>(), 40);
  EXPECT_GT(img.narrow(2, 20, 12).min().item<int>(), 210);
}

TEST(Image, MissingTruncatedAndForeignFilesAreNamed) {
  TempDir tmp;
  const auto missing = tmp.path() / "none.png";
  EXPECT_NE(mgpu::testing::error_of([&] {
              mgpu::data::load_image(missing, 3, 32, 32);
            }).find("cannot open image " + missing.string()),
            std::string::npos);

  const auto px = rgb_pixels(16, 16);
  const auto cut = tmp.path() / "cut.png";
  ASSERT_TRUE(stbi_write_png(cut.c_str(), 16, 16, 3, px.data(), 16 * 3));
  fs::resize_file(cut, fs::file_size(cut) / 2);
  const auto cut_error = mgpu::testing::error_of([&] { mgpu::data::load_image(cut, 3, 32, 32); });
  EXPECT_NE(cut_error.find("image " + cut.string() + " cannot be decoded"), std::string::npos)
      << cut_error;

  const auto text = tmp.path() / "notes.png";
  std::ofstream(text) << "not an image at all";
  const auto text_error = mgpu::testing::error_of([&] { mgpu::data::load_image(text, 3, 32, 32); });
  EXPECT_NE(text_error.find(text.string()), std::string::npos) << text_error;
  EXPECT_NE(text_error.find("expected PNG, JPEG"), std::string::npos) << text_error;

  const auto empty = tmp.path() / "empty.jpg";
  std::ofstream{empty};
  EXPECT_NE(mgpu::testing::error_of([&] {
              mgpu::data::load_image(empty, 3, 32, 32);
            }).find(empty.string()),
            std::string::npos);
}

TEST(Image, AHeaderClaimingAHugePictureIsRefusedBeforeAnyAllocation) {
  // A PNG signature and an IHDR chunk for 12,000 x 12,000 RGB pixels (432 MB decoded, under
  // stb's own 1 GB limit), and nothing else: 33 bytes.
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\0\0\0\x0d", 4) + "IHDR";
  png += std::string("\0\0\x2e\xe0\0\0\x2e\xe0", 8);  // width, height: 12000
  png += std::string("\x08\x02\0\0\0", 5);            // 8 bits, RGB, no interlace
  png += std::string("\0\0\0\0", 4);                  // CRC (stb does not check it)
  const auto error =
      mgpu::testing::error_of([&] { mgpu::data::decode_image(png, "bomb.png", 3, 32, 32); });
  EXPECT_NE(error.find("image bomb.png is 12000x12000 pixels: more than the 100 million accepted"),
            std::string::npos)
      << error;
}
