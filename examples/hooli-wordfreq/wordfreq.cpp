// hooli/wordfreq: a meshwa HTTP function in C++ (std::string, std::unordered_map, std::sort).
//
//   POST /hooli/wordfreq?top=N   the N most frequent words of the body (default 10), one per line
//                              as "count word", most frequent first, ties alphabetical.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "meshwa.h"

namespace {

std::vector<std::pair<std::string, size_t>> top_words(const uint8_t *text, size_t len, size_t limit) {
    std::unordered_map<std::string, size_t> counts;
    std::string word;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? text[i] : ' ';
        if (std::isalnum(c) || c == '\'') {
            word.push_back(static_cast<char>(std::tolower(c)));
        } else if (!word.empty()) {
            counts[word]++;
            word.clear();
        }
    }
    std::vector<std::pair<std::string, size_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto &a, const auto &b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (sorted.size() > limit) sorted.resize(limit);
    return sorted;
}

}  // namespace

extern "C" void meshwa_handle(const meshwa_request *req, meshwa_response *res) {
    meshwa_response_header(res, "content-type", "text/plain; charset=utf-8");
    if (std::string(req->method) != "POST") {
        meshwa_response_status(res, 405);
        meshwa_response_printf(res, "POST a text to count its words\n");
        return;
    }
    char top_text[16];
    size_t top = 10;
    if (meshwa_query_param(req, "top", top_text, sizeof top_text) > 0) {
        long parsed = std::strtol(top_text, nullptr, 10);
        if (parsed > 0 && parsed <= 1000) top = static_cast<size_t>(parsed);
    }
    for (const auto &[word, count] : top_words(req->body, req->body_len, top)) {
        meshwa_response_printf(res, "%zu %s\n", count, word.c_str());
    }
}
