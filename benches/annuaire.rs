//! Annuaire benchmark (not a test): a real server on SQLite in a temporary directory, N
//! generated agents stored as replicated annuaire entries (bulk insert through the store), the
//! index build time and memory at start, then M `/user_directory/search` requests over HTTP as
//! an agent, with their latency percentiles.
//!
//! `cargo bench --bench annuaire` (release profile). `ANNUAIRE_USERS` (default 1 000 000) and
//! `ANNUAIRE_QUERIES` (default 10 000) change the sizes. The load runs in a first process; the
//! server is started in a second one (the same binary, re-executed) so that its memory figures
//! are not inflated by the generator's.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use palabre::{
    config::{Config, EmailRule, PasswordHashing, RateLimit, RateLimits, TchapConfig},
    services::policy::email,
    store::{annuaire::EntryRow, Db},
};
use serde_json::{json, Value};

const ME: &str = "bench.example";
const PEER: &str = "agents.example";
const PW: &str = "Correct-Horse-42!";

const FIRST: &[&str] = &[
    "Jean",
    "Marie",
    "Pierre",
    "Hélène",
    "François",
    "Françoise",
    "Jean-Pierre",
    "Marie-Claire",
    "Anne",
    "Élodie",
    "Émilie",
    "Jérôme",
    "Stéphane",
    "Céline",
    "Nathalie",
    "Isabelle",
    "Sylvie",
    "Catherine",
    "Christophe",
    "Philippe",
    "Nicolas",
    "Julien",
    "Sébastien",
    "Frédéric",
    "Laurent",
    "Olivier",
    "David",
    "Éric",
    "Thierry",
    "Patrick",
    "Michel",
    "Alain",
    "Bernard",
    "Daniel",
    "Christian",
    "Gérard",
    "André",
    "Louis",
    "Lucas",
    "Léa",
    "Chloé",
    "Manon",
    "Camille",
    "Inès",
    "Zoé",
    "Noémie",
    "Maëlle",
    "Loïc",
    "Gaëlle",
    "Joël",
    "Raphaël",
    "Mathéo",
    "Théo",
    "Hugo",
    "Arthur",
    "Jules",
    "Gabriel",
    "Adèle",
    "Agnès",
    "Bérénice",
    "Clémence",
    "Aurélie",
    "Valérie",
    "Véronique",
    "Hervé",
    "Rémi",
    "Benoît",
    "Jean-François",
    "Jean-Luc",
    "Anne-Sophie",
    "Marie-Hélène",
    "Pierre-Yves",
    "Jean-Marc",
    "Paul",
    "Claire",
    "Sophie",
    "Julie",
    "Laura",
    "Sarah",
    "Emma",
    "Louise",
    "Alice",
    "Juliette",
    "Mathilde",
    "Margaux",
    "Pauline",
    "Océane",
    "Anaïs",
    "Mélanie",
    "Aurélien",
    "Maxime",
    "Antoine",
    "Thomas",
    "Alexandre",
    "Romain",
    "Vincent",
    "Guillaume",
    "Fabien",
    "Cédric",
    "Grégoire",
    "Hélios",
    "Noël",
    "Cécile",
    "Ségolène",
];

const LAST: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefebvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Masson",
    "Sanchez",
    "Gérard",
    "Nguyen",
    "Boyer",
    "Denis",
    "Lemaire",
    "Duval",
    "Joly",
    "Gautier",
    "Roger",
    "Roche",
    "Roy",
    "Noël",
    "Meyer",
    "Lucas",
    "Meunier",
    "Jean",
    "Pérez",
    "Marchand",
    "Dufour",
    "Blanchard",
    "Marie",
    "Barbier",
    "Brun",
    "Dumas",
    "Brunet",
    "Schmitt",
    "Leroux",
    "Colin",
    "Fernandez",
    "Pierre",
    "Renard",
    "Arnaud",
    "Rolland",
    "Caron",
    "Aubert",
    "Giraud",
    "Leclerc",
    "Vidal",
    "Bourgeois",
    "Renaud",
    "Lemoine",
    "Picard",
    "Gaillard",
    "Philippe",
    "Leclercq",
    "Lacroix",
    "Fabre",
    "Dupuis",
    "Olivier",
    "Rodriguez",
    "Da Silva",
    "Hubert",
    "Louis",
    "Charles",
    "Guillot",
    "Rivière",
    "Le Gall",
    "Guillaume",
    "Adam",
    "Rey",
    "Moulin",
    "Gonzalez",
    "Berger",
    "Lecomte",
    "Ménard",
    "Fleury",
    "Deschamps",
    "Carpentier",
    "Julien",
    "Benoît",
    "Paris",
    "Maillard",
    "Marchal",
    "Aubry",
    "Vasseur",
    "Le Roux",
    "Renault",
    "Jacquet",
    "Collet",
    "Prévost",
    "Poirier",
    "Charpentier",
    "Royer",
    "Huet",
    "Baron",
    "Dupuy",
    "Pons",
    "Paul",
    "Laine",
    "Carré",
    "Breton",
    "Rémy",
    "Schneider",
    "Perrot",
    "Guyot",
    "Barré",
    "Marty",
    "Cousin",
    "Bouvier",
    "Labbé",
    "Gilbert",
    "Étienne",
    "Lebrun",
    "Hamon",
    "Besson",
    "Lefort",
    "Jacob",
    "Gros",
    "Langlois",
    "Chauvin",
    "Lebon",
    "Pelletier",
    "Texier",
    "Bailly",
    "Delmas",
    "Tessier",
    "Bodin",
    "Dos Santos",
    "Lemaître",
    "Géraud",
    "Quéméner",
    "Kerbrat",
    "Le Bihan",
    "Péron",
    "Hénaff",
    "Trémolières",
    "Béranger",
    "Désiré",
    "Château",
    "Hérault",
];

/// (organisation label, sub-domains).
const ORGS: &[(&str, &[&str])] = &[
    ("interieur", &["", "sg", "dgpn", "prefecture-75", "dgsi"]),
    ("justice", &["", "sg", "dap"]),
    ("finances", &["", "dgfip", "douane", "insee"]),
    ("armees", &["", "dga", "sga"]),
    ("education", &["", "ac-paris", "ac-lyon", "ac-lille"]),
    ("sante", &["", "ars", "dgs"]),
    ("culture", &["", "dgpa"]),
    ("agriculture", &["", "draaf"]),
    ("ecologie", &["", "dreal"]),
    ("travail", &["", "dreets"]),
    ("diplomatie", &["", "ambassades"]),
    ("numerique", &["", "dinum"]),
    ("transports", &[""]),
    ("sports", &[""]),
    ("outre-mer", &[""]),
    ("cohesion-territoires", &[""]),
    ("premier-ministre", &["", "sgdsn"]),
    ("elysee", &[""]),
    ("social", &["", "cnaf"]),
    ("recherche", &["", "cnrs"]),
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn capitalise_org(label: &str) -> String {
    let mut c = label.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The i-th agent: every (first name, last name) pair at most once (last names include
/// hyphenated compounds), so no clash number is needed.
fn agent(i: usize, rng: &mut Rng) -> EntryRow {
    let compounds = LAST.len() * LAST.len();
    let combos = FIRST.len() * (LAST.len() + compounds);
    // A stride coprime with `combos` walks the pairs without repeating.
    let mut stride = 7_919usize;
    while gcd(stride, combos) != 1 {
        stride += 2;
    }
    let c = (i * stride) % combos;
    let first = FIRST[c % FIRST.len()];
    let l = c / FIRST.len();
    let last = if l < LAST.len() {
        LAST[l].to_owned()
    } else {
        let k = l - LAST.len();
        format!("{}-{}", LAST[k / LAST.len()], LAST[k % LAST.len()])
    };
    let (org, subs) = ORGS[rng.below(ORGS.len())];
    let sub = subs[rng.below(subs.len())];
    let domain = if sub.is_empty() {
        format!("{org}.gouv.fr")
    } else {
        format!("{sub}.{org}.gouv.fr")
    };
    let local = email::fold(&format!("{first}.{last}"))
        .replace(' ', "-")
        .to_lowercase();
    let address = format!("{local}@{domain}");
    let user_id = format!("@{}:{PEER}", email::localpart(&address));
    EntryRow {
        user_id,
        server: PEER.into(),
        display_name: Some(format!("{first} {last} [{}]", capitalise_org(org))),
        avatar_url: None,
        emails: vec![address],
        external: false,
        visible: true,
        position: None,
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A realistic search term.
fn query(rng: &mut Rng) -> String {
    let first = FIRST[rng.below(FIRST.len())];
    let last = LAST[rng.below(LAST.len())];
    let prefix = |s: &str, rng: &mut Rng| -> String {
        let n = 2 + rng.below(5);
        s.chars().take(n).collect()
    };
    match rng.below(8) {
        0 => prefix(first, rng),
        1 => prefix(last, rng).to_lowercase(),
        2 => format!("{first} {last}"),
        3 => format!("{} {}", email::fold(first), prefix(last, rng)),
        4 => ORGS[rng.below(ORGS.len())].0.to_owned(),
        5 => format!("{} {}", prefix(last, rng), ORGS[rng.below(ORGS.len())].0),
        6 => email::fold(last),
        _ => first.to_lowercase(),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn config(dir: &Path) -> Config {
    let off = RateLimit {
        per_second: 0.0,
        burst: 0.0,
    };
    let mut c = Config {
        server_name: ME.into(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        database_url: Some(format!("sqlite://{}/palabre.db", dir.display())),
        password_hashing: PasswordHashing {
            memory_kib: 64,
            iterations: 1,
        },
        rate_limits: RateLimits {
            login: off,
            login_failures: off,
            registration: off,
            message: off,
            search: off,
            email_invite: off,
        },
        ..Config::default()
    };
    c.federation.enabled = false;
    c.tchap = Some(TchapConfig {
        email_rules: vec![EmailRule {
            address: None,
            pattern: Some(r".*@(.+\.)?gouv\.fr".into()),
            server: PEER.into(),
            requires_invite: false,
        }],
        ..Default::default()
    });
    c
}

async fn load(dir: &Path, n: usize) -> anyhow::Result<()> {
    let db = Db::connect(&format!("sqlite://{}/palabre.db", dir.display()), 4).await?;
    db.migrate().await?;
    let start = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        batch.push(agent(i, &mut rng));
        if batch.len() == 10_000 || i + 1 == n {
            db.annuaire_write(&batch, 0).await?;
            batch.clear();
        }
    }
    db.close().await;
    println!(
        "loaded {n} replicated entries in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn serve(dir: &Path, queries: usize) -> anyhow::Result<()> {
    let before = rss_kib();
    let start = Instant::now();
    let running = palabre::server::start(config(dir)).await?;
    let started = start.elapsed();
    let after = rss_kib();
    let s = running.services.clone();
    {
        let ix = s.annuaire.index.read();
        println!(
            "server start (index build included): {:.2} s; index: {} users, {} terms, ~{} MiB by count",
            started.as_secs_f64(),
            ix.len(),
            ix.term_count(),
            ix.approx_bytes() / (1024 * 1024)
        );
    }
    println!(
        "RSS before start {} MiB, after {} MiB (+{} MiB)",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / 1024
    );
    s.accounts()
        .create_user_cli("searcher", PW, false)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let http = reqwest::Client::new();
    let base = format!("http://{}", running.addr);
    let login: Value = http
        .post(format!("{base}/_matrix/client/v3/login"))
        .json(&json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "searcher"}, "password": PW}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login failed: {login}"))?
        .to_owned();
    let url = format!("{base}/_matrix/client/v3/user_directory/search");
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    // Warm-up.
    for _ in 0..200 {
        let q = query(&mut rng);
        http.post(&url)
            .bearer_auth(&token)
            .json(&json!({"search_term": q}))
            .send()
            .await?
            .bytes()
            .await?;
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(queries);
    let mut found = 0usize;
    let mut empty = 0usize;
    for _ in 0..queries {
        let q = query(&mut rng);
        let t = Instant::now();
        let resp = http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"search_term": q}))
            .send()
            .await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        lat.push(t.elapsed());
        anyhow::ensure!(status.is_success(), "search {q:?}: {status} {v}");
        let n = v["results"].as_array().map_or(0, Vec::len);
        found += n;
        if n == 0 {
            empty += 1;
        }
    }
    lat.sort();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i].as_secs_f64() * 1000.0
    };
    println!(
        "{queries} searches over HTTP: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         ({:.1} results per search on average, {empty} empty)",
        pct(0.50),
        pct(0.95),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        found as f64 / queries as f64
    );
    running.stop().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(dir) = std::env::var("ANNUAIRE_BENCH_SERVE") {
        let queries = env_usize("ANNUAIRE_QUERIES", 10_000);
        return rt.block_on(serve(&PathBuf::from(dir), queries));
    }
    let n = env_usize("ANNUAIRE_USERS", 1_000_000);
    let dir = tempfile::tempdir()?;
    rt.block_on(load(dir.path(), n))?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .env("ANNUAIRE_BENCH_SERVE", dir.path())
        .status()?;
    anyhow::ensure!(status.success(), "the serving process failed");
    Ok(())
}
