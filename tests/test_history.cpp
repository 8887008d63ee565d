// history.csv round trip, its refusals, and atomic writes.
#include <gtest/gtest.h>

#include <fstream>

#include "Fixtures.h"
#include "data/InputError.h"
#include "train/files/AtomicFile.h"
#include "train/report/History.h"

using namespace mgpu::train;
using mgpu::testing::TempDir;
using mgpu::testing::read_text;


TEST(History, CsvRoundTrip) {
  TempDir tmp;
  History h = {{1, 5e-3, 63.25, 1.5, 0.45, 1.7, 0.4}, {2, 4.9e-3, 62.5, 1.1, 0.61, 1.2, 0.58}};
  write_text_atomically(tmp.path() / "history.csv", history_csv(h));
  const auto text = read_text(tmp.path() / "history.csv");
  EXPECT_EQ(text.substr(0, text.find('\n')), "epoch,lr,seconds,loss,acc,val_loss,val_acc");
  const History back = read_history_csv(tmp.path() / "history.csv");
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1].epoch, 2);
  EXPECT_DOUBLE_EQ(back[1].lr, 4.9e-3);
  EXPECT_NEAR(back[0].seconds, 63.25, 1e-9);
  EXPECT_NEAR(back[1].val_acc, 0.58, 1e-9);
}

TEST(History, BadCsvNamesFileAndLine) {
  TempDir tmp;
  const auto file = tmp.path() / "h.csv";
  write_text_atomically(file, "epoch,lr,seconds,loss,acc,val_loss,val_acc\n1,2,3,4,5,6\n");
  try {
    read_history_csv(file);
    FAIL() << "no error";
  } catch (const mgpu::data::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("h.csv:2: expected 7"), std::string::npos) << e.what();
  }
  write_text_atomically(file, "a,b\n");
  EXPECT_THROW(read_history_csv(file), mgpu::data::InputError);
  write_text_atomically(file, "epoch,lr,seconds,loss,acc,val_loss,val_acc\n");
  EXPECT_THROW(read_history_csv(file), mgpu::data::InputError);  // no epochs
  EXPECT_THROW(read_history_csv(tmp.path() / "absent.csv"), mgpu::data::InputError);
}

TEST(History, FailedWriteKeepsThePreviousFileAndLeavesNoTemporary) {
  TempDir tmp;
  const auto file = tmp.path() / "out.txt";
  write_text_atomically(file, "old\n");
  EXPECT_THROW(write_atomically(file,
                                [](const std::filesystem::path& t) {
                                  std::ofstream(t) << "half";
                                  throw std::runtime_error("disk full");
                                }),
               std::runtime_error);
  EXPECT_EQ(read_text(file), "old\n");
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "out.txt.tmp"));
}

TEST(History, UnwritablePathThrowsNamingIt) {
  TempDir tmp;
  write_text_atomically(tmp.path() / "file", "x");
  try {
    write_text_atomically(tmp.path() / "file" / "sub.csv", "y");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("sub.csv"), std::string::npos) << e.what();
  }
}
