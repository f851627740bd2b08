//! The in-memory search index of the annuaire: a sorted term dictionary (`BTreeMap` from a
//! folded word to the ascending list of the document slots holding it) and, per document, its
//! terms in one string (to take it out of the dictionary when it changes). A query walks the
//! dictionary range of its most selective word; the other words are checked through bitmaps of
//! their own ranges, never by reading the documents.
//!
//! Memory: one `u32` per (term, user) in the posting lists, each distinct term once (names are
//! shared by many people: ~tens of thousands of terms for a million users), and per user its
//! id, display name, avatar and one string of its terms.
//!
//! Ranking: every query word must be a prefix of some term of the user. Users matching more
//! query words exactly (a whole term) come first; then by the term the most selective word
//! matched, in dictionary order (so an exact term before its extensions); then by entry order.

use std::{
    collections::{BTreeMap, BinaryHeap, HashMap},
    ops::Bound,
    sync::Arc,
};

use crate::services::policy::email::fold;

/// Terms kept per user, and the longest term.
const MAX_TERMS: usize = 32;
const MAX_TERM_BYTES: usize = 64;
/// Query words used at most.
pub const MAX_QUERY_WORDS: usize = 8;

/// One bit per document slot.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: u32) {
        self.0[i as usize / 64] |= 1 << (i % 64);
    }
    fn get(&self, i: u32) -> bool {
        self.0[i as usize / 64] & (1 << (i % 64)) != 0
    }
}

/// A user as the index returns them.
pub struct Doc {
    pub user_id: Arc<str>,
    pub display_name: Option<Box<str>>,
    pub avatar_url: Option<Box<str>>,
    /// Sorted distinct terms separated by spaces.
    terms: Box<str>,
}

/// A hit's place in the ranking (smaller is better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// `MAX_QUERY_WORDS - exact words`.
    pub inexact: u8,
    /// Dictionary order of the term the driving word matched (`u32::MAX`: outside the index).
    pub term: u32,
    /// Entry order (`u32::MAX`: outside the index).
    pub slot: u32,
}

#[derive(Default)]
pub struct Index {
    docs: Vec<Option<Doc>>,
    free: Vec<u32>,
    by_id: HashMap<Arc<str>, u32>,
    terms: BTreeMap<Box<str>, Vec<u32>>,
}

/// The folded words of a text: lower case, no accents, split on anything not alphanumeric.
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

/// A user's terms: the words of the localpart and of the display name (its `[Org]` included),
/// and the labels of each email domain but the top-level one.
pub fn doc_terms(user_id: &str, display_name: Option<&str>, emails: &[String]) -> Vec<String> {
    let localpart = user_id
        .strip_prefix('@')
        .unwrap_or(user_id)
        .split(':')
        .next()
        .unwrap_or("");
    let mut terms: Vec<String> = words(localpart)
        .chain(display_name.into_iter().flat_map(words))
        .collect();
    for e in emails {
        if let Some((_, domain)) = e.rsplit_once('@') {
            let labels: Vec<&str> = domain.split('.').collect();
            for l in &labels[..labels.len().saturating_sub(1)] {
                terms.extend(words(l));
            }
        }
    }
    terms.retain(|t| t.len() <= MAX_TERM_BYTES);
    terms.sort();
    terms.dedup();
    terms.truncate(MAX_TERMS);
    terms
}

/// The query's words (distinct, at most [`MAX_QUERY_WORDS`]); a full user id counts for its
/// localpart.
pub fn query_words(query: &str) -> Vec<String> {
    let q = query.trim();
    let q = match q.strip_prefix('@') {
        Some(rest) => rest.split(':').next().unwrap_or(""),
        None => q,
    };
    let mut out: Vec<String> = vec![];
    for w in words(q) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out.truncate(MAX_QUERY_WORDS);
    out
}

/// How `terms` (space-separated, sorted) answer `query`: None when some word is no prefix of
/// any term, else the number of words equal to a whole term.
pub fn match_terms(terms: &str, query: &[String]) -> Option<u8> {
    let mut exact = 0u8;
    for w in query {
        let mut best = 0;
        for t in terms.split(' ') {
            if t == w {
                best = 2;
                break;
            }
            if t.starts_with(w.as_str()) {
                best = 1;
            }
        }
        match best {
            0 => return None,
            2 => exact += 1,
            _ => {}
        }
    }
    Some(exact)
}

impl Index {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn term_count(&self) -> usize {
        self.terms.len()
    }

    /// Heap bytes held, roughly (strings, posting lists, tables).
    pub fn approx_bytes(&self) -> usize {
        let docs: usize = self
            .docs
            .iter()
            .flatten()
            .map(|d| {
                d.user_id.len()
                    + 16
                    + d.display_name.as_ref().map_or(0, |s| s.len())
                    + d.avatar_url.as_ref().map_or(0, |s| s.len())
                    + d.terms.len()
            })
            .sum();
        let postings: usize = self
            .terms
            .iter()
            .map(|(t, p)| t.len() + p.capacity() * 4 + 64)
            .sum();
        docs + self.docs.capacity() * std::mem::size_of::<Option<Doc>>()
            + self.by_id.capacity() * 32
            + postings
    }

    /// Adds or replaces a user.
    pub fn upsert(
        &mut self,
        user_id: &str,
        display_name: Option<&str>,
        avatar_url: Option<&str>,
        emails: &[String],
    ) {
        let terms = doc_terms(user_id, display_name, emails);
        let slot = match self.by_id.get(user_id) {
            Some(&slot) => {
                self.unpost(slot);
                slot
            }
            None => match self.free.pop() {
                Some(s) => s,
                None => {
                    self.docs.push(None);
                    (self.docs.len() - 1) as u32
                }
            },
        };
        let id: Arc<str> = match &self.docs[slot as usize] {
            Some(d) => d.user_id.clone(),
            None => Arc::from(user_id),
        };
        self.by_id.insert(id.clone(), slot);
        for t in &terms {
            let posting = match self.terms.get_mut(t.as_str()) {
                Some(p) => p,
                None => self.terms.entry(t.clone().into_boxed_str()).or_default(),
            };
            match posting.last() {
                Some(&last) if last >= slot => {
                    if let Err(at) = posting.binary_search(&slot) {
                        posting.insert(at, slot);
                    }
                }
                _ => posting.push(slot),
            }
        }
        self.docs[slot as usize] = Some(Doc {
            user_id: id,
            display_name: display_name.map(Into::into),
            avatar_url: avatar_url.map(Into::into),
            terms: terms.join(" ").into_boxed_str(),
        });
    }

    /// Removes a user (no-op when absent).
    pub fn remove(&mut self, user_id: &str) {
        if let Some(slot) = self.by_id.remove(user_id) {
            self.unpost(slot);
            self.docs[slot as usize] = None;
            self.free.push(slot);
        }
    }

    fn unpost(&mut self, slot: u32) {
        let Some(doc) = &self.docs[slot as usize] else {
            return;
        };
        for t in doc.terms.split(' ').filter(|t| !t.is_empty()) {
            if let Some(p) = self.terms.get_mut(t) {
                if let Ok(at) = p.binary_search(&slot) {
                    p.remove(at);
                }
                if p.is_empty() {
                    self.terms.remove(t);
                }
            }
        }
    }

    fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u32])> + 'a {
        self.terms
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(t, _)| t.starts_with(prefix))
            .map(|(t, p)| (&**t, p.as_slice()))
    }

    /// One word: candidates come in rank order (the exact term first, then the dictionary
    /// order, then entry order); stop when `k` are in. A user holding several terms starting
    /// with the word is taken at the first.
    fn best_one(&self, w: &str, k: usize) -> Vec<(Rank, u32)> {
        let mut out: Vec<(Rank, u32)> = Vec::with_capacity(k);
        let mut taken = std::collections::HashSet::new();
        'terms: for (seq, (term, posting)) in self.range(w).enumerate() {
            let exact = (term == w) as u8;
            for &slot in posting {
                if !taken.insert(slot) {
                    continue;
                }
                let rank = Rank {
                    inexact: MAX_QUERY_WORDS as u8 - exact,
                    term: seq as u32,
                    slot,
                };
                out.push((rank, slot));
                if out.len() >= k {
                    break 'terms;
                }
            }
        }
        out
    }

    /// Several words: the other words' postings are marked in bitmaps (one bit per entry),
    /// then the driving word's candidates are checked against them without touching the
    /// documents; the best `k` are kept in a heap.
    fn best_many(&self, query: &[String], d: usize, k: usize) -> Vec<(Rank, u32)> {
        let n = self.docs.len();
        let others: Vec<(Bits, Option<&[u32]>)> = query
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != d)
            .map(|(_, w)| {
                let mut bits = Bits::new(n);
                for (_, p) in self.range(w) {
                    for &slot in p {
                        bits.set(slot);
                    }
                }
                (bits, self.terms.get(w.as_str()).map(Vec::as_slice))
            })
            .collect();
        let dw = query[d].as_str();
        let mut seen = Bits::new(n);
        let mut best: BinaryHeap<(Rank, u32)> = BinaryHeap::new();
        for (seq, (term, posting)) in self.range(dw).enumerate() {
            let exact_d = (term == dw) as u8;
            for &slot in posting {
                // Taken at the first of its terms starting with the driving word.
                if seen.get(slot) {
                    continue;
                }
                seen.set(slot);
                if !others.iter().all(|(b, _)| b.get(slot)) {
                    continue;
                }
                let exact = exact_d
                    + others
                        .iter()
                        .filter(|(_, p)| p.is_some_and(|p| p.binary_search(&slot).is_ok()))
                        .count() as u8;
                let rank = Rank {
                    inexact: MAX_QUERY_WORDS as u8 - exact,
                    term: seq as u32,
                    slot,
                };
                if best.len() < k {
                    best.push((rank, slot));
                } else if best.peek().is_some_and(|(worst, _)| rank < *worst) {
                    best.pop();
                    best.push((rank, slot));
                }
            }
        }
        best.into_vec()
    }

    /// The best `k` users matching every word of `query` (from [`query_words`]), best first.
    pub fn search(&self, query: &[String], k: usize) -> Vec<(Rank, &Doc)> {
        if query.is_empty() || k == 0 {
            return vec![];
        }
        // The driving word: the one with the fewest postings.
        let mut driving: Option<(usize, usize)> = None;
        for (i, w) in query.iter().enumerate() {
            let mut count = 0usize;
            for (_, p) in self.range(w) {
                count += p.len();
                if driving.is_some_and(|(_, best)| count >= best) {
                    break;
                }
            }
            if driving.is_none_or(|(_, best)| count < best) {
                driving = Some((i, count));
            }
        }
        let Some((d, count)) = driving else {
            return vec![];
        };
        if count == 0 {
            return vec![];
        }
        let dw = query[d].as_str();
        let best = if query.len() == 1 {
            self.best_one(dw, k)
        } else {
            self.best_many(query, d, k)
        };
        let mut out: Vec<(Rank, &Doc)> = best
            .into_iter()
            .filter_map(|(r, slot)| self.docs[slot as usize].as_ref().map(|d| (r, d)))
            .collect();
        out.sort_by_key(|(r, _)| *r);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(hits: &[(Rank, &Doc)]) -> Vec<String> {
        hits.iter().map(|(_, d)| d.user_id.to_string()).collect()
    }

    #[test]
    fn prefixes_accents_org_ranking() {
        let mut ix = Index::default();
        ix.upsert(
            "@helene.dupont-interieur.gouv.fr:a",
            Some("Hélène Dupont [Interieur]"),
            None,
            &["helene.dupont@interieur.gouv.fr".into()],
        );
        ix.upsert("@marc:a", Some("Marc Martin [Armees]"), None, &[]);
        ix.upsert("@ma:a", Some("Ma Li [Sante]"), None, &[]);
        ix.upsert(
            "@jp:b",
            Some("Jean-Pierre Dupré"),
            None,
            &["jp@sg.finances.gouv.fr".into()],
        );
        fn s_in(ix: &Index, q: &str) -> Vec<String> {
            ids(&ix.search(&query_words(q), 10))
        }
        let s = |q: &str| s_in(&ix, q);
        assert_eq!(s("helene"), vec!["@helene.dupont-interieur.gouv.fr:a"]);
        assert_eq!(s("HÉL"), vec!["@helene.dupont-interieur.gouv.fr:a"]);
        assert_eq!(s("interieur"), vec!["@helene.dupont-interieur.gouv.fr:a"]);
        assert_eq!(s("finances"), vec!["@jp:b"]);
        assert_eq!(s("jean-pi"), vec!["@jp:b"]);
        assert_eq!(s("dupre jean"), vec!["@jp:b"]);
        assert!(s("dupre marc").is_empty());
        // Exact word first, then prefixes in dictionary order; one hit per user.
        assert_eq!(s("ma"), vec!["@ma:a", "@marc:a"]);
        assert_eq!(
            s("dup"),
            vec!["@helene.dupont-interieur.gouv.fr:a", "@jp:b"]
        );
        assert_eq!(ix.search(&query_words("ma"), 1).len(), 1);
        ix.upsert("@marc:a", Some("Marc Zola"), None, &[]);
        assert!(s_in(&ix, "martin").is_empty());
        assert_eq!(s_in(&ix, "zola"), vec!["@marc:a"]);
        ix.remove("@marc:a");
        assert!(s_in(&ix, "zola").is_empty());
        assert_eq!(ix.len(), 3);
        ix.upsert("@new:a", Some("Zoé Nouvelle"), None, &[]);
        assert_eq!(s_in(&ix, "zoe"), vec!["@new:a"]);
        assert_eq!(s_in(&ix, "@jp:b"), vec!["@jp:b"]);
    }
}
