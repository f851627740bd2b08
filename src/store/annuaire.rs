//! The annuaire (`annuaire_entries`, `annuaire_emails`, `annuaire_peers`): the federation's
//! user directory, local entries with their change positions and replicated ones.

use sqlx::Row;

use super::{Db, Tx};

/// Entries written per statement (9 parameters each).
const WRITE_BATCH: usize = 500;

/// One user of the federation as the annuaire knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    pub user_id: String,
    pub server: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    /// Bound addresses, normalised.
    pub emails: Vec<String>,
    pub external: bool,
    pub visible: bool,
    /// Local change position (`None` for replicated entries).
    pub position: Option<i64>,
}

impl EntryRow {
    /// Same content (the position aside).
    pub fn same_content(&self, other: &EntryRow) -> bool {
        self.user_id == other.user_id
            && self.server == other.server
            && self.display_name == other.display_name
            && self.avatar_url == other.avatar_url
            && self.emails == other.emails
            && self.external == other.external
            && self.visible == other.visible
    }
}

/// What a local user's entry is computed from.
#[derive(Debug, Clone, Default)]
pub struct LocalFacts {
    pub user_id: String,
    pub exists: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub deactivated: bool,
    pub emails: Vec<String>,
    /// `im.vector.hide_profile` global account data, raw JSON.
    pub hide_profile: Option<String>,
}

const ENTRY_COLS: &str =
    "user_id, server, display_name, avatar_url, emails, external, visible, position";

fn entry(r: &sqlx::any::AnyRow) -> sqlx::Result<EntryRow> {
    let emails: String = r.try_get(4)?;
    Ok(EntryRow {
        user_id: r.try_get(0)?,
        server: r.try_get(1)?,
        display_name: r.try_get(2)?,
        avatar_url: r.try_get(3)?,
        emails: serde_json::from_str(&emails).unwrap_or_default(),
        external: r.try_get::<i64, _>(5)? != 0,
        visible: r.try_get::<i64, _>(6)? != 0,
        position: r.try_get(7)?,
    })
}

impl Db {
    /// The entries of these users (any order).
    pub async fn annuaire_entries_of(&self, users: &[String]) -> sqlx::Result<Vec<EntryRow>> {
        self.select_in_rows(
            &format!("SELECT {ENTRY_COLS} FROM annuaire_entries WHERE user_id IN ({{in}})"),
            &[],
            users,
        )
        .await?
        .iter()
        .map(entry)
        .collect()
    }

    /// Writes entries (insert or replace, each with the position it carries) and their
    /// addresses, in one transaction.
    pub async fn annuaire_write(&self, entries: &[EntryRow], now: i64) -> sqlx::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for chunk in entries.chunks(WRITE_BATCH) {
            Self::annuaire_write_chunk(&mut tx.tx, chunk, now).await?;
        }
        tx.commit().await
    }

    async fn annuaire_write_chunk(tx: &mut Tx, chunk: &[EntryRow], now: i64) -> sqlx::Result<()> {
        let mut sql = format!("INSERT INTO annuaire_entries ({ENTRY_COLS}, updated_ts) VALUES ");
        super::push_rows_from(&mut sql, 1, chunk.len(), 9);
        sql.push_str(
            " ON CONFLICT (user_id) DO UPDATE SET server = excluded.server, \
             display_name = excluded.display_name, avatar_url = excluded.avatar_url, \
             emails = excluded.emails, external = excluded.external, visible = excluded.visible, \
             position = excluded.position, updated_ts = excluded.updated_ts",
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.user_id)
                .bind(&e.server)
                .bind(&e.display_name)
                .bind(&e.avatar_url)
                .bind(serde_json::to_string(&e.emails).unwrap_or_else(|_| "[]".into()))
                .bind(e.external as i64)
                .bind(e.visible as i64)
                .bind(e.position)
                .bind(now);
        }
        q.execute(&mut **tx).await?;
        let sql = format!(
            "DELETE FROM annuaire_emails WHERE user_id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q.bind(&e.user_id);
        }
        q.execute(&mut **tx).await?;
        let mut pairs: Vec<(&str, &str)> = chunk
            .iter()
            .flat_map(|e| e.emails.iter().map(|a| (a.as_str(), e.user_id.as_str())))
            .collect();
        // One row per address (the last entry naming it wins).
        pairs.reverse();
        let mut seen = std::collections::HashSet::new();
        pairs.retain(|(a, _)| seen.insert(*a));
        for part in pairs.chunks(WRITE_BATCH) {
            let mut sql = "INSERT INTO annuaire_emails (address, user_id) VALUES ".to_owned();
            super::push_rows_from(&mut sql, 1, part.len(), 2);
            sql.push_str(" ON CONFLICT (address) DO UPDATE SET user_id = excluded.user_id");
            let mut q = sqlx::query(&sql);
            for (a, u) in part {
                q = q.bind(*a).bind(*u);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Local entries changed after `since`, in position order.
    pub async fn annuaire_changes(&self, since: i64, limit: i64) -> sqlx::Result<Vec<EntryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLS} FROM annuaire_entries WHERE position > $1 \
             ORDER BY position LIMIT $2"
        ))
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// Visible entries after `after` in user id order (loading the search index in pages).
    pub async fn annuaire_visible_page(
        &self,
        after: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<EntryRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLS} FROM annuaire_entries WHERE visible = 1 AND user_id > $1 \
             ORDER BY user_id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry).collect()
    }

    /// The highest local position (0 when none).
    pub async fn annuaire_max_position(&self) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT MAX(position) FROM annuaire_entries")
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        Ok(row
            .map(|r| r.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    }

    /// The account an address belongs to according to the annuaire.
    pub async fn annuaire_email_owner(&self, address: &str) -> sqlx::Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM annuaire_emails WHERE address = $1")
            .bind(address)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// How far a peer's change stream has been pulled (0: never).
    pub async fn annuaire_peer_since(&self, server: &str) -> sqlx::Result<i64> {
        let row = sqlx::query("SELECT since FROM annuaire_peers WHERE server = $1")
            .bind(server)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Replicated entries and the position they were pulled up to, in one transaction (a
    /// crash never skips a page).
    pub async fn annuaire_store_pulled(
        &self,
        server: &str,
        entries: &[EntryRow],
        since: i64,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        for chunk in entries.chunks(WRITE_BATCH) {
            Self::annuaire_write_chunk(&mut tx.tx, chunk, now).await?;
        }
        sqlx::query(
            "INSERT INTO annuaire_peers (server, since) VALUES ($1, $2) \
             ON CONFLICT (server) DO UPDATE SET since = excluded.since",
        )
        .bind(server)
        .bind(since)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Local users without an entry yet (the backfill at start), at most `limit`.
    pub async fn users_without_annuaire_entry(&self, limit: i64) -> sqlx::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT u.user_id FROM users u LEFT JOIN annuaire_entries a ON a.user_id = u.user_id \
             WHERE a.user_id IS NULL ORDER BY u.user_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// What the entries of these local users are computed from: three queries whatever the
    /// number of users.
    pub async fn annuaire_local_facts(&self, users: &[String]) -> sqlx::Result<Vec<LocalFacts>> {
        let mut out: Vec<LocalFacts> = users
            .iter()
            .map(|u| LocalFacts {
                user_id: u.clone(),
                ..Default::default()
            })
            .collect();
        let at: std::collections::HashMap<String, usize> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.clone(), i))
            .collect();
        for chunk in users.chunks(WRITE_BATCH) {
            let list = super::placeholders(1, chunk.len());
            let sql = format!(
                "SELECT user_id, displayname, avatar_url, deactivated FROM users \
                 WHERE user_id IN ({list})"
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            for r in q.fetch_all(&self.pool).await? {
                let user: String = r.try_get(0)?;
                if let Some(f) = at.get(&user).map(|i| &mut out[*i]) {
                    f.exists = true;
                    f.displayname = r.try_get(1)?;
                    f.avatar_url = r.try_get(2)?;
                    f.deactivated = r.try_get::<i64, _>(3)? != 0;
                }
            }
            let sql = format!(
                "SELECT user_id, address FROM user_threepids WHERE medium = 'email' \
                 AND user_id IN ({list}) ORDER BY address"
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            for r in q.fetch_all(&self.pool).await? {
                let user: String = r.try_get(0)?;
                if let Some(f) = at.get(&user).map(|i| &mut out[*i]) {
                    f.emails.push(r.try_get(1)?);
                }
            }
            for (user, content) in self
                .global_account_data_of(chunk, "im.vector.hide_profile")
                .await?
            {
                if let Some(f) = at.get(&user).map(|i| &mut out[*i]) {
                    f.hide_profile = Some(content);
                }
            }
        }
        Ok(out)
    }

    /// Users joined to a room `searcher` is joined to (local or remote), with the content of
    /// their current membership event (display name, avatar), at most `limit` rows. Local
    /// deactivated users are left out.
    pub async fn shared_room_members(
        &self,
        searcher: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT m.user_id, e.json FROM memberships me \
             JOIN memberships m ON m.room_id = me.room_id AND m.membership = 'join' \
             JOIN events e ON e.event_id = m.event_id \
             WHERE me.user_id = $1 AND me.membership = 'join' AND m.user_id <> $1 \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = m.user_id AND u.deactivated = 1) \
             LIMIT $2",
        )
        .bind(searcher)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
