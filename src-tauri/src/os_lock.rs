//! Locking when the OS does: the session locks (`org.freedesktop.login1.Session.Lock`,
//! or a screensaver's `ActiveChanged(true)`), or the machine is about to sleep
//! (`org.freedesktop.login1.Manager.PrepareForSleep(true)`).
//!
//! login1 lives on the system bus and screensavers on the session bus. The watcher takes
//! the connections it is given, so a test can emit the same signals on its own bus.
//! Anyone on a bus can send such a signal; the worst it can do is lock the app.

use std::sync::Arc;

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

use crate::session::Core;

/// One signal that means "lock now", and which argument value does.
struct Trigger {
    interface: &'static str,
    member: &'static str,
    /// `None`: the signal has no arguments; `Some(true)`: its boolean argument is true.
    when: Option<bool>,
    cause: &'static str,
}

const SYSTEM_TRIGGERS: &[Trigger] = &[
    Trigger {
        interface: "org.freedesktop.login1.Session",
        member: "Lock",
        when: None,
        cause: "os_lock",
    },
    Trigger {
        interface: "org.freedesktop.login1.Manager",
        member: "PrepareForSleep",
        when: Some(true),
        cause: "os_suspend",
    },
];

const SESSION_TRIGGERS: &[Trigger] = &[
    Trigger {
        interface: "org.freedesktop.ScreenSaver",
        member: "ActiveChanged",
        when: Some(true),
        cause: "os_screensaver",
    },
    Trigger {
        interface: "org.gnome.ScreenSaver",
        member: "ActiveChanged",
        when: Some(true),
        cause: "os_screensaver",
    },
];

/// The buses to listen on. In the app: the system and the session bus.
pub struct Buses {
    pub system: Option<Connection>,
    pub session: Option<Connection>,
}

impl Buses {
    /// Connects to whichever of the system and session bus exist.
    pub async fn connect() -> Self {
        let system = Connection::system().await;
        let session = Connection::session().await;
        if system.is_err() {
            tracing::warn!("no system bus: the app will not lock on OS lock or suspend");
        }
        Self {
            system: system.ok(),
            session: session.ok(),
        }
    }
}

/// Subscribes to every trigger on its bus, then returns a future that locks `core` each
/// time one fires. Subscribing first means a signal sent after this returns is seen.
pub async fn watch(
    core: Arc<Core>,
    buses: Buses,
) -> Result<impl std::future::Future<Output = ()>, zbus::Error> {
    let mut streams = Vec::new();
    let pairs = [
        (buses.system.as_ref(), SYSTEM_TRIGGERS),
        (buses.session.as_ref(), SESSION_TRIGGERS),
    ];
    for (conn, triggers) in pairs {
        let Some(conn) = conn else { continue };
        for trigger in triggers {
            let rule = MatchRule::builder()
                .msg_type(Type::Signal)
                .interface(trigger.interface)?
                .member(trigger.member)?
                .build();
            let stream = MessageStream::for_match_rule(rule, conn, Some(16)).await?;
            streams.push(stream.map(move |m| (trigger, m)).boxed());
        }
    }
    Ok(async move {
        let mut all = futures_util::stream::select_all(streams);
        while let Some((trigger, message)) = all.next().await {
            let Ok(message) = message else { continue };
            let fire = match trigger.when {
                None => true,
                Some(expected) => message.body().deserialize::<bool>().ok() == Some(expected),
            };
            if fire {
                core.lock_because(trigger.cause);
            }
        }
    })
}
