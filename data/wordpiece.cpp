// BERT's WordPiece tokenizer (see wordpiece.h).
#include "data/wordpiece.h"

#include <unicode/normalizer2.h>  // NFD, for stripping accents
#include <unicode/uchar.h>        // u_charType, u_isUWhiteSpace, u_ispunct
#include <unicode/unistr.h>
#include <unicode/ustring.h>      // u_strToLower
#include <unicode/utf8.h>         // U8_NEXT

#include <algorithm>
#include <stdexcept>

namespace loom::data {
namespace {

constexpr size_t kMaxWordChars = 100;  // longer words become [UNK] (as BERT's)

std::u32string DecodeUtf8(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  const auto* bytes = reinterpret_cast<const uint8_t*>(s.data());
  const int32_t length = static_cast<int32_t>(s.size());
  for (int32_t i = 0; i < length;) {
    UChar32 c;
    U8_NEXT(bytes, i, length, c);
    out.push_back(c < 0 ? 0xFFFD : static_cast<char32_t>(c));  // invalid bytes: dropped as U+FFFD is
  }
  return out;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

bool IsWhitespace(char32_t c) { return c == '\t' || c == '\n' || c == '\r' || u_isUWhiteSpace(static_cast<UChar32>(c)); }

// Control, format, surrogate, private-use and unassigned code points (tab, newline and
// carriage return count as whitespace instead).
bool IsControl(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
      return true;
    default:
      return false;
  }
}

// ASCII punctuation (which includes symbols such as $ + < = > ^ ` |) or Unicode's P*.
bool IsPunctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return u_ispunct(static_cast<UChar32>(c));
}

// The CJK Unified Ideographs blocks, which BERT splits into one word each.
bool IsCjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Canonical decomposition with the non-spacing marks removed: "café" -> "cafe".
std::u32string StripAccents(const std::u32string& text) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfd = icu::Normalizer2::getNFDInstance(err);
  icu::UnicodeString in = icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                                        static_cast<int32_t>(text.size()));
  icu::UnicodeString decomposed = nfd->normalize(in, err);
  if (U_FAILURE(err)) return text;  // cannot happen for valid code points
  std::u32string out;
  for (int32_t i = 0; i < decomposed.length();) {
    const UChar32 c = decomposed.char32At(i);
    i += U16_LENGTH(c);
    if (u_charType(c) != U_NON_SPACING_MARK) out.push_back(static_cast<char32_t>(c));
  }
  return out;
}

// Full lower-case mapping of each code point on its own (as Rust's char::to_lowercase:
// no context, so a final capital sigma becomes σ, not ς).
std::u32string Lowercase(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (const char32_t c : text) {
    if (c < 0x80) {
      out.push_back(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      continue;
    }
    UChar src[2], dst[8];
    int32_t n = 0;
    UBool error = false;
    U16_APPEND(src, n, 2, static_cast<UChar32>(c), error);
    UErrorCode err = U_ZERO_ERROR;
    const int32_t m = u_strToLower(dst, 8, src, n, "", &err);
    if (U_FAILURE(err) || error) {
      out.push_back(c);
      continue;
    }
    for (int32_t i = 0; i < m;) {
      UChar32 l;
      U16_NEXT(dst, i, m, l);
      out.push_back(static_cast<char32_t>(l));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const WordPieceTokenizer>> WordPieceTokenizer::FromVocab(const std::string& vocab,
                                                                                       const std::string& where,
                                                                                       bool lowercase) {
  std::shared_ptr<WordPieceTokenizer> t(new WordPieceTokenizer());
  t->vocab_text_ = vocab;
  t->lowercase_ = lowercase;
  size_t start = 0;
  while (start < vocab.size()) {
    size_t end = vocab.find('\n', start);
    if (end == std::string::npos) end = vocab.size();
    std::string piece = vocab.substr(start, end - start);
    while (!piece.empty() && (piece.back() == '\r' || piece.back() == ' ' || piece.back() == '\t')) piece.pop_back();
    t->ids_[piece] = static_cast<int64_t>(t->pieces_.size());  // a repeated piece: the later line wins
    t->pieces_.push_back(std::move(piece));
    start = end + 1;
  }
  auto special = [&](const char* name, int64_t* id) -> absl::Status {
    const auto it = t->ids_.find(name);
    if (it == t->ids_.end()) {
      return absl::InvalidArgumentError(where + " has no " + name + " piece: a BERT vocab.txt holds [PAD], [UNK], "
                                        "[CLS] and [SEP]; pass the vocab that came with the weights");
    }
    *id = it->second;
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(special("[PAD]", &t->pad_));
  RETURN_IF_ERROR(special("[UNK]", &t->unknown_));
  RETURN_IF_ERROR(special("[CLS]", &t->cls_));
  RETURN_IF_ERROR(special("[SEP]", &t->sep_));
  for (const char* piece : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    const auto it = t->ids_.find(piece);
    if (it != t->ids_.end()) t->specials_.emplace_back(piece, it->second);
  }
  return std::shared_ptr<const WordPieceTokenizer>(std::move(t));
}

void WordPieceTokenizer::AddWord(const std::u32string& word, std::vector<int64_t>* ids) const {
  if (word.size() > kMaxWordChars) {
    ids->push_back(unknown_);
    return;
  }
  // The word in UTF-8 once, with where each character starts.
  std::string utf8;
  std::vector<size_t> at;
  for (const char32_t c : word) {
    at.push_back(utf8.size());
    AppendUtf8(c, &utf8);
  }
  at.push_back(utf8.size());
  std::vector<int64_t> pieces;
  size_t start = 0;
  while (start < word.size()) {
    int64_t found = -1;
    size_t end = word.size();
    for (; end > start; --end) {
      const std::string piece = (start > 0 ? "##" : "") + utf8.substr(at[start], at[end] - at[start]);
      const auto it = ids_.find(piece);
      if (it != ids_.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {  // no piece fits here: the whole word is unknown
      ids->push_back(unknown_);
      return;
    }
    pieces.push_back(found);
    start = end;
  }
  ids->insert(ids->end(), pieces.begin(), pieces.end());
}

std::vector<int64_t> WordPieceTokenizer::PieceIds(const std::string& text) const {
  // Special pieces written in the text ("[SEP]") are matched as they are, before any
  // normalisation, and the spans between them are tokenized on their own.
  std::vector<int64_t> ids;
  size_t from = 0;
  while (from < text.size()) {
    size_t at = std::string::npos, length = 0;
    int64_t id = -1;
    for (const auto& [piece, piece_id] : specials_) {
      const size_t found = text.find(piece, from);
      if (found != std::string::npos && (found < at || (found == at && piece.size() > length))) {
        at = found;
        length = piece.size();
        id = piece_id;
      }
    }
    AddSpan(text.substr(from, at == std::string::npos ? std::string::npos : at - from), &ids);
    if (at == std::string::npos) break;
    ids.push_back(id);
    from = at + length;
  }
  return ids;
}

void WordPieceTokenizer::AddSpan(const std::string& text, std::vector<int64_t>* out) const {
  // Normalise: drop NUL, U+FFFD and control characters, whitespace to ' ', spaces
  // around CJK ideographs; then accents and case.
  std::u32string clean;
  for (const char32_t c : DecodeUtf8(text)) {
    if (c == 0 || c == 0xFFFD || IsControl(c)) continue;
    if (IsCjk(c)) {
      clean += U' ';
      clean += c;
      clean += U' ';
    } else {
      clean.push_back(IsWhitespace(c) ? U' ' : c);
    }
  }
  if (lowercase_) clean = Lowercase(StripAccents(clean));
  // Words: runs between whitespace, each punctuation character a word of its own.
  std::vector<int64_t>& ids = *out;
  std::u32string word;
  for (const char32_t c : clean) {
    if (IsWhitespace(c) || IsPunctuation(c)) {
      if (!word.empty()) AddWord(word, &ids);
      word.clear();
      if (!IsWhitespace(c)) AddWord(std::u32string(1, c), &ids);
    } else {
      word.push_back(c);
    }
  }
  if (!word.empty()) AddWord(word, &ids);
}

std::vector<std::string> WordPieceTokenizer::Tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (const int64_t id : PieceIds(text)) out.push_back(pieces_[static_cast<size_t>(id)]);
  return out;
}

void WordPieceTokenizer::Encode(const std::string& text, int max_tokens, int64_t* ids, bool* mask) const {
  if (max_tokens < 2) throw std::invalid_argument("WordPieceTokenizer::Encode: max_tokens < 2 leaves no room for [CLS] and [SEP]");
  std::vector<int64_t> pieces = PieceIds(text);
  const size_t room = static_cast<size_t>(std::max(0, max_tokens - 2));
  if (pieces.size() > room) pieces.resize(room);
  int n = 0;
  ids[n++] = cls_;
  for (const int64_t p : pieces) ids[n++] = p;
  ids[n++] = sep_;
  for (int i = 0; i < max_tokens; ++i) {
    mask[i] = i < n;
    if (i >= n) ids[i] = pad_;
  }
}

std::vector<int64_t> WordPieceTokenizer::Encode(const std::string& text, int max_tokens) const {
  std::vector<int64_t> ids(static_cast<size_t>(max_tokens));
  std::unique_ptr<bool[]> mask(new bool[static_cast<size_t>(max_tokens)]);
  Encode(text, max_tokens, ids.data(), mask.get());
  return ids;
}

}  // namespace loom::data
