//! The search index's terms: every message's text, folded to lower case, as the unigrams and
//! bigrams of its runs of letters and digits, each hashed to 64 bits.
//!
//! Why this finds any substring of one character or more, in any script: if a message's folded
//! text contains a query's folded text, then every letter or digit of the query, and every pair
//! of adjacent ones, occurs in the message as a unigram or a bigram of the same run. So the
//! messages that hold all of a query's terms ([`query_terms`]) include every message that
//! contains it; the search then keeps only those that really contain it ([`contains`]). A query
//! of one character asks for its unigram; a longer one for its bigrams (a lone letter between
//! punctuation for its unigram); one without letters or digits has no terms and is answered by
//! the substring check alone over the other filters. CJK text needs no word breaking: 用户 is
//! one bigram. Hash collisions only add candidates, which the check removes.

/// Folds text for matching: Unicode lower case, character by character (so folding a substring
/// gives a substring of the folded text).
pub fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// Does `text` contain `query` (folded)? `folded_query` is `fold(query)`.
pub fn contains(text: &str, folded_query: &str) -> bool {
    folded_query.is_empty() || fold(text).contains(folded_query)
}

/// FNV-1a over the UTF-8 of a gram, the top bit cleared (PostgreSQL's BIGINT is signed, and the
/// SQLite index writes it as hex). Stable forever: stored indexes depend on it.
fn hash(gram: &[char]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 4];
    for c in gram {
        for b in c.encode_utf8(&mut buf).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator, so that no two different grams hash the same bytes.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 1) as i64
}

/// Runs of letters and digits in folded text.
fn runs(folded: &str) -> Vec<Vec<char>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    for c in folded.chars() {
        if c.is_alphanumeric() {
            run.push(c);
        } else if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// A message's terms: the unigrams and bigrams of its folded text, each once, sorted.
pub fn message_terms(text: &str) -> Vec<i64> {
    let mut terms = Vec::new();
    for run in runs(&fold(text)) {
        for (i, c) in run.iter().enumerate() {
            terms.push(hash(std::slice::from_ref(c)));
            if i + 1 < run.len() {
                terms.push(hash(&run[i..i + 2]));
            }
        }
    }
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// The terms every message containing `query` holds (empty: the query has no letters or
/// digits, and only the substring check can answer it).
pub fn query_terms(query: &str) -> Vec<i64> {
    let mut terms = Vec::new();
    for run in runs(&fold(query)) {
        if run.len() == 1 {
            terms.push(hash(&run));
        } else {
            terms.extend(run.windows(2).map(hash));
        }
    }
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// A term as a token of SQLite's `ascii` FTS5 tokenizer: `t` and its low 48 bits in base 36
/// (at most 10 digits). Two grams sharing a token only add candidates, which the text check
/// removes; short tokens keep the index and the tokenizer's work small.
pub fn token(term: i64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = (term as u64) & 0xffff_ffff_ffff;
    let mut out = [0u8; 11];
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    i -= 1;
    out[i] = b't';
    String::from_utf8(out[i..].to_vec()).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_term_is_a_message_term_whenever_the_text_contains_it() {
        let texts = ["新用户登录了系统", "Meeting at 10:30, room B-2", "ユーザー登録", "회의실 예약", "x"];
        for text in texts {
            let have = message_terms(text);
            let folded: Vec<char> = fold(text).chars().collect();
            for i in 0..folded.len() {
                for j in i + 1..=folded.len() {
                    let q: String = folded[i..j].iter().collect();
                    for t in query_terms(&q) {
                        assert!(have.binary_search(&t).is_ok(), "{q:?} in {text:?}");
                    }
                    assert!(contains(text, &fold(&q)));
                }
            }
        }
    }

    #[test]
    fn terms_tell_grams_apart_and_fold_case() {
        assert_eq!(query_terms("MEET"), query_terms("meet"));
        assert_ne!(query_terms("用户"), query_terms("户用"));
        assert!(query_terms("!?").is_empty());
        assert_eq!(query_terms("用"), message_terms("用"));
        // A two-character query is one bigram, not its two unigrams.
        assert_eq!(query_terms("用户").len(), 1);
        assert_eq!(token(0x1f), "tv");
        assert_eq!(token(0), "t0");
        assert_eq!(token(i64::MAX), "t2rrvthnxtr");
    }
}
