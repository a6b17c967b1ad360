//! Seeds posting's database for `bench/postings`: N postings by a handful of
//! authors, one microsecond apart, then prints the cursor of a page 90 % of
//! the way down the board (the deep page the benchmark fetches).
//!
//! `cargo run --release -p dure-posting --example seed_postings -- DATABASE_URL COUNT`

use dure_chassis::db::Db;
use dure_chassis::{clock, pagination};
use time::OffsetDateTime;

const BATCH: usize = 1000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url: dure_chassis::config::DatabaseUrl = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: seed_postings DATABASE_URL COUNT"))?
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let count: usize = args.next().unwrap_or_else(|| "10000".into()).parse()?;
    if !url.is_sqlite() {
        dure_chassis::db::create_postgres_database(url.as_str()).await?;
    }
    let db = Db::connect(&url, &dure_posting::MIGRATIONS).await?;
    let authors: Vec<String> = (0..50).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let start = OffsetDateTime::now_utc() - time::Duration::days(365);
    let mut inserted = 0;
    while inserted < count {
        let rows = BATCH.min(count - inserted);
        let placeholders: Vec<String> = (0..rows)
            .map(|r| {
                let b = r * 7;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, 0)",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO postings (id, title, body, author_id, author_name, created_at, updated_at, comment_count) VALUES {}",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in 0..rows {
            let n = inserted + r;
            let at = clock::format(start + time::Duration::microseconds(i64::try_from(n)? * 1000));
            query = query
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(format!("Posting number {n}"))
                .bind("A body of moderate length, about as long as a short paragraph of a real posting.")
                .bind(authors[n % authors.len()].clone())
                .bind(format!("Author {}", n % authors.len()))
                .bind(at.clone())
                .bind(at);
        }
        let mut tx = db.begin().await?;
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        inserted += rows;
    }
    let deep = i64::try_from(count * 9 / 10)?;
    let (created_at, id): (String, String) = sqlx::query_as(
        "SELECT created_at, id FROM postings ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET $1",
    )
    .bind(deep)
    .fetch_one(db.pool())
    .await?;
    println!("{}", pagination::BY_CREATION.encode(&[&created_at, &id]));
    db.close().await;
    Ok(())
}
