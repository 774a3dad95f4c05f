//! Locking when the OS does: the session locks (`org.freedesktop.login1.Session.Lock`,
//! or a screensaver's `ActiveChanged(true)`), or the machine is about to sleep
//! (`org.freedesktop.login1.Manager.PrepareForSleep(true)`).
//!
//! login1 lives on the system bus and screensavers on the session bus. The watcher takes
//! the connections it is given, so a test can emit the same signals on its own bus.
//! Anyone on a bus can send such a signal; the worst it can do is lock the app.
//!
//! On a workstation with several OS sessions (fast user switching), login1 announces each
//! session's lock on its own object: the app listens only to its own session's
//! (`GetSessionByPID`), and to every session's only when it cannot tell which is its own.
//!
//! The signals of one bus are handled in the order the bus delivered them (one stream per
//! bus, not one per signal merged): so a signal that must not lock, followed by one that
//! must, shows by the cause of the lock that the first was seen and passed over.

use std::sync::Arc;

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, MatchRule, MessageStream};

use super::Lockable;

/// One signal that means "lock now", and which argument value does.
struct Trigger {
    interface: &'static str,
    member: &'static str,
    /// `None`: the signal has no arguments; `Some(true)`: its boolean argument is true.
    when: Option<bool>,
    cause: &'static str,
    /// Sent on each OS session's own object: only ours counts.
    per_session: bool,
}

const SYSTEM_TRIGGERS: &[Trigger] = &[
    Trigger {
        interface: "org.freedesktop.login1.Session",
        member: "Lock",
        when: None,
        cause: "os_lock",
        per_session: true,
    },
    Trigger {
        interface: "org.freedesktop.login1.Manager",
        member: "PrepareForSleep",
        when: Some(true),
        cause: "os_suspend",
        per_session: false,
    },
];

const SESSION_TRIGGERS: &[Trigger] = &[
    Trigger {
        interface: "org.freedesktop.ScreenSaver",
        member: "ActiveChanged",
        when: Some(true),
        cause: "os_screensaver",
        per_session: false,
    },
    Trigger {
        interface: "org.gnome.ScreenSaver",
        member: "ActiveChanged",
        when: Some(true),
        cause: "os_screensaver",
        per_session: false,
    },
];

/// The buses to listen on. In the app: the system and the session bus.
pub struct Buses {
    pub system: Option<Connection>,
    pub session: Option<Connection>,
    /// This process's login1 session object; `None`: a lock of any session locks the app.
    pub login_session: Option<OwnedObjectPath>,
}

impl Buses {
    /// Connects to whichever of the system and session bus exist.
    pub async fn connect() -> Self {
        let system = Connection::system().await;
        let session = Connection::session().await;
        if system.is_err() {
            tracing::warn!("no system bus: the app will not lock on OS lock or suspend");
        }
        let login_session = match &system {
            Ok(conn) => own_login_session(conn).await,
            Err(_) => None,
        };
        if system.is_ok() && login_session.is_none() {
            tracing::warn!("own login session unknown: any session's lock locks the app");
        }
        Self {
            system: system.ok(),
            session: session.ok(),
            login_session,
        }
    }
}

/// The login1 session this process belongs to, if login1 knows it.
async fn own_login_session(conn: &Connection) -> Option<OwnedObjectPath> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.login1"),
            "/org/freedesktop/login1",
            Some("org.freedesktop.login1.Manager"),
            "GetSessionByPID",
            &(std::process::id()),
        )
        .await
        .ok()?;
    reply.body().deserialize::<OwnedObjectPath>().ok()
}

impl Trigger {
    /// The bus match rule for this trigger; per-session ones only on `own` session's path.
    fn rule(&self, own: Option<&OwnedObjectPath>) -> zbus::Result<MatchRule<'static>> {
        let mut rule = MatchRule::builder()
            .msg_type(Type::Signal)
            .interface(self.interface)?
            .member(self.member)?;
        if self.per_session
            && let Some(own) = own
        {
            rule = rule.path(own.clone().into_inner())?;
        }
        Ok(rule.build())
    }

    /// Whether `message` (which matched this trigger's rule) means "lock now".
    fn fires(&self, message: &zbus::Message) -> bool {
        match self.when {
            None => true,
            Some(expected) => message.body().deserialize::<bool>().ok() == Some(expected),
        }
    }
}

/// Subscribes to every trigger on its bus, then returns a future that locks `app` each
/// time one fires. Subscribing first means a signal sent after this returns is seen.
pub async fn watch(
    app: Arc<impl Lockable>,
    buses: Buses,
) -> Result<impl std::future::Future<Output = ()>, zbus::Error> {
    let mut streams = Vec::new();
    let pairs = [
        (buses.system.as_ref(), SYSTEM_TRIGGERS),
        (buses.session.as_ref(), SESSION_TRIGGERS),
    ];
    for (conn, triggers) in pairs {
        let Some(conn) = conn else { continue };
        // Every message of the connection, in arrival order; taken before the rules are
        // added, so nothing the bus sends for them comes before the stream exists.
        let stream = MessageStream::from(conn);
        let bus = zbus::fdo::DBusProxy::new(conn).await?;
        let mut rules = Vec::new();
        for trigger in triggers {
            let rule = trigger.rule(buses.login_session.as_ref())?;
            bus.add_match_rule(rule.clone()).await?;
            rules.push((trigger, rule));
        }
        let causes = stream.filter_map(move |message| {
            let cause = message.ok().and_then(|message| {
                rules
                    .iter()
                    .find(|(_, rule)| rule.matches(&message).unwrap_or(false))
                    .filter(|(trigger, _)| trigger.fires(&message))
                    .map(|(trigger, _)| trigger.cause)
            });
            std::future::ready(cause)
        });
        streams.push(causes.boxed());
    }
    Ok(async move {
        let mut all = futures_util::stream::select_all(streams);
        while let Some(cause) = all.next().await {
            app.lock_for(cause);
        }
    })
}
