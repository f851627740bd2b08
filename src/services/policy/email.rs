//! Identity from an email address (TCHAP.md §2): the address's canonical form, the localpart
//! and the display name a new account gets from it.

use unicode_normalization::UnicodeNormalization;

/// Longest accepted address (RFC 5321's path limit).
pub const MAX_ADDRESS: usize = 254;

/// The canonical form of an address: trimmed and lower-cased.
pub fn normalise(address: &str) -> String {
    address.trim().to_lowercase()
}

/// A plausible address: `local@domain`, the local part made of letters, digits and RFC 5322
/// `atext` symbols separated by single dots, the domain of dotted labels of letters, digits and
/// hyphens; at most [`MAX_ADDRESS`] bytes. Anything a mail library could read as a display name,
/// a comment, a quoted string or a second address (`< > ( ) " , ; : [ ] \` spaces) is refused,
/// so the address gated, bound and mailed is one and the same.
pub fn is_valid(address: &str) -> bool {
    let a = address.trim();
    if a.is_empty() || a.len() > MAX_ADDRESS {
        return false;
    }
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.split('.').all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c))
        });
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

/// Lower case without diacritics (é → e, Ç → c): the form names are compared and searched in.
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The localpart for an address: lower-cased, accents dropped, `@` replaced by `-`, only
/// `[a-z0-9._=/-]` kept. `jean.dupont@interieur.gouv.fr` → `jean.dupont-interieur.gouv.fr`.
/// The caller appends a number on a clash.
pub fn localpart(address: &str) -> String {
    fold(&normalise(address))
        .replace('@', "-")
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._=/-".contains(*c))
        .collect()
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// The organisation label of a domain: the label just before `gouv.fr` (bare `gouv.fr` gives
/// `Gouv`), else the second-level domain; capitalised.
fn organisation(domain: &str) -> String {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let n = labels.len();
    let label = if n >= 2 && labels[n - 2] == "gouv" && labels[n - 1] == "fr" {
        if n >= 3 {
            labels[n - 3]
        } else {
            "gouv"
        }
    } else if n >= 2 {
        labels[n - 2]
    } else {
        labels.first().copied().unwrap_or("")
    };
    capitalise(label)
}

/// The display name for an address: dots of the local part become spaces, each word and each
/// hyphenated part is capitalised, then ` [Org]`. `jean.dupont@interieur.gouv.fr` →
/// `Jean Dupont [Interieur]`.
pub fn display_name(address: &str) -> String {
    let address = normalise(address);
    let (local, domain) = address.split_once('@').unwrap_or((&address, ""));
    let local = local.split('+').next().unwrap_or(local);
    let name = local
        .split(['.', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| w.split('-').map(capitalise).collect::<Vec<_>>().join("-"))
        .collect::<Vec<_>>()
        .join(" ");
    let org = organisation(domain);
    if org.is_empty() {
        name
    } else {
        format!("{name} [{org}]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations() {
        let table = [
            (
                "jean.dupont@interieur.gouv.fr",
                "jean.dupont-interieur.gouv.fr",
                "Jean Dupont [Interieur]",
            ),
            (
                "Jean-Pierre.Martin@finances.gouv.fr",
                "jean-pierre.martin-finances.gouv.fr",
                "Jean-Pierre Martin [Finances]",
            ),
            (
                "marie.durand@dgfip.finances.gouv.fr",
                "marie.durand-dgfip.finances.gouv.fr",
                "Marie Durand [Finances]",
            ),
            ("agent@gouv.fr", "agent-gouv.fr", "Agent [Gouv]"),
            (
                "hélène.bézier@culture.gouv.fr",
                "helene.bezier-culture.gouv.fr",
                "Hélène Bézier [Culture]",
            ),
            (
                "paul.smith@partner.example.com",
                "paul.smith-partner.example.com",
                "Paul Smith [Example]",
            ),
            (
                "anne+tchap@beta.gouv.fr",
                "annetchap-beta.gouv.fr",
                "Anne [Beta]",
            ),
            ("o'neil@ext.org", "oneil-ext.org", "O'neil [Ext]"),
        ];
        for (address, lp, name) in table {
            assert_eq!(localpart(address), lp, "{address}");
            assert_eq!(display_name(address), name, "{address}");
        }
    }

    #[test]
    fn validity_and_folding() {
        assert!(is_valid("a@b.fr"));
        for bad in [
            "", "a", "a@b", "@b.fr", "a@@b.fr", "a b@c.fr", "a@.fr", "a@b..fr",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
        assert_eq!(fold("Éloïse ÇA"), "eloise ca");
    }
}
