//! Space hierarchy pagination: where a paginated `/hierarchy` walk stands between two pages.

use sqlx::Row;

use super::Db;

/// A saved walk: the request it belongs to and its state (JSON, owned by the service).
#[derive(Debug, Clone)]
pub struct HierarchyPage {
    pub user_id: String,
    pub room_id: String,
    pub suggested_only: bool,
    pub max_depth: Option<i64>,
    pub walk: String,
}

impl Db {
    /// Saves a walk under `token` and drops the expired ones.
    pub async fn insert_hierarchy_page(
        &self,
        token: &str,
        page: &HierarchyPage,
        expires_ts: i64,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM hierarchy_pages WHERE expires_ts <= $1")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO hierarchy_pages (token, user_id, room_id, suggested_only, max_depth, walk, expires_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token)
        .bind(&page.user_id)
        .bind(&page.room_id)
        .bind(page.suggested_only as i64)
        .bind(page.max_depth)
        .bind(&page.walk)
        .bind(expires_ts)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// A saved walk that has not expired.
    pub async fn hierarchy_page(
        &self,
        token: &str,
        now: i64,
    ) -> sqlx::Result<Option<HierarchyPage>> {
        let row = sqlx::query(
            "SELECT user_id, room_id, suggested_only, max_depth, walk FROM hierarchy_pages \
             WHERE token = $1 AND expires_ts > $2",
        )
        .bind(token)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| {
            Ok(HierarchyPage {
                user_id: r.try_get(0)?,
                room_id: r.try_get(1)?,
                suggested_only: r.try_get::<i64, _>(2)? == 1,
                max_depth: r.try_get(3)?,
                walk: r.try_get(4)?,
            })
        })
        .transpose()
    }
}
