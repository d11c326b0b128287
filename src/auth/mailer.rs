//! Delivery of activation codes by e-mail over SMTP (`lettre`).
//!
//! The transport is given as a URL, so one setting (an environment variable fed from a
//! Kubernetes secret) carries host, port, TLS mode and credentials:
//! `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required` (STARTTLS),
//! `smtps://user:pass@host:465` (implicit TLS). Certificates are checked against the bundled
//! Mozilla roots, so the static image needs no system certificate store.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How long one delivery may take. The client waits for it inside its HELLO, which the
/// transport bounds too, so this stays well below the default hello timeout.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("invalid SMTP URL: {0}")]
    Url(#[source] lettre::transport::smtp::Error),
    #[error("invalid sender address {address:?}: {source}")]
    From {
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("invalid recipient address {address:?}: {source}")]
    To {
        address: String,
        source: lettre::address::AddressError,
    },
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP delivery failed: {0}")]
    Send(#[from] lettre::transport::smtp::Error),
}

/// Which flow a code belongs to; the reference words the two mails differently.
#[derive(Clone, Copy, Debug)]
pub enum CodeKind {
    Registration,
    Login,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(url: &str, from: &str) -> Result<Mailer, MailerError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(MailerError::Url)?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from = from.parse().map_err(|source| MailerError::From {
            address: from.to_owned(),
            source,
        })?;
        Ok(Mailer { transport, from })
    }

    pub async fn send_code(&self, to: &str, code: &str, kind: CodeKind) -> Result<(), MailerError> {
        let to: Mailbox = to.parse().map_err(|source| MailerError::To {
            address: to.to_owned(),
            source,
        })?;
        let (subject, text) = activation_mail(code, kind);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)?;
        self.transport.send(message).await?;
        Ok(())
    }
}

/// Subject and body, worded as the reference master's mails so users recognise them.
fn activation_mail(code: &str, kind: CodeKind) -> (&'static str, String) {
    match kind {
        CodeKind::Registration => (
            "Crossbar.io: your REGISTRATION code",
            format!(
                "Hello from Crossbar.io!\n\n\
                 We have received a registration request for this email address.\n\n\
                 Please use this activation code:\n    {code}\n\
                 e.g. to authenticate using the Crossbar.io shell do\n    \
                 crossbar shell auth --code {code}\n\n\
                 If you did not request a registration, then just ignore this email. \
                 No Crossbar.io account will be created for your email address!\n"
            ),
        ),
        CodeKind::Login => (
            "Crossbar.io: your LOGIN code",
            format!(
                "Hello from Crossbar.io!\n\n\
                 We have received a login request for this email address.\n\n\
                 Please use this activation code:\n    {code}\n\
                 e.g. to authenticate using the Crossbar.io shell do\n    \
                 crossbar shell auth --code {code}\n\n\
                 If you did not request a login code, then just ignore this email.\n"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_addresses_are_checked_up_front() {
        assert!(matches!(
            Mailer::new("ftp://mail.example.com", "master@example.com"),
            Err(MailerError::Url(_))
        ));
        assert!(matches!(
            Mailer::new("smtp://127.0.0.1:2525", "not an address"),
            Err(MailerError::From { .. })
        ));
        assert!(Mailer::new("smtps://u:p@mail.example.com:465", "Master <m@example.com>").is_ok());
    }

    #[test]
    fn both_mails_carry_the_code() {
        for kind in [CodeKind::Registration, CodeKind::Login] {
            let (subject, text) = activation_mail("ABCD-EFGH-JKLM", kind);
            assert!(subject.starts_with("Crossbar.io: your "));
            assert!(text.contains("\n    ABCD-EFGH-JKLM\n"));
        }
    }
}
