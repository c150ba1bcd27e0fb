//! Asking whichever node holds an upload's lease to let it go, over PostgreSQL's
//! LISTEN/NOTIFY: replicas behind a load balancer share nothing else, and a client's next
//! request (a resume after a network change above all) often reaches another replica than
//! its last one. SQLite is one node: nothing to ask.

use diesel::pg::PgConnection;
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};

use super::{DbConnection, DbError};

/// The channel every node listens on; a notification's payload is an upload id and the
/// asking node's id, separated by a space.
const CHANNEL: &str = "hoist_lease_release";

/// Node `asking` asks the others to let go of upload `id`'s lease (only its holder acts on
/// it).
pub fn request(conn: &mut DbConnection, id: &str, asking: &str) -> Result<(), DbError> {
    if let DbConnection::Postgres(pg) = conn {
        let payload = format!("{id} {asking}");
        diesel::sql_query("SELECT pg_notify($1, $2)").bind::<Text, _>(CHANNEL).bind::<Text, _>(payload).execute(pg)?;
    }
    Ok(())
}

/// A request heard: the upload asked for, and the node that asked.
pub struct ReleaseRequest {
    pub upload: String,
    pub asking: String,
}

/// A connection of its own that hears those requests.
pub struct ReleaseListener {
    conn: PgConnection,
}

impl ReleaseListener {
    /// Connects to the PostgreSQL at `url` and listens.
    pub fn connect(url: &str) -> Result<ReleaseListener, DbError> {
        let mut conn = PgConnection::establish(url).map_err(|e| DbError::Unavailable(e.to_string()))?;
        diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn)?;
        Ok(ReleaseListener { conn })
    }

    /// The requests heard since the last call, without waiting.
    pub fn received(&mut self) -> Result<Vec<ReleaseRequest>, DbError> {
        let mut requests = Vec::new();
        for notification in self.conn.notifications_iter() {
            let payload = notification?.payload;
            let (upload, asking) = payload.split_once(' ').unwrap_or((payload.as_str(), ""));
            requests.push(ReleaseRequest { upload: upload.to_owned(), asking: asking.to_owned() });
        }
        Ok(requests)
    }

    /// A round trip, so that a connection the server dropped shows as an error.
    pub fn check(&mut self) -> Result<(), DbError> {
        diesel::sql_query("SELECT 1").execute(&mut self.conn)?;
        Ok(())
    }
}
