//! Unsubscribe links: every e-mail carries `List-Unsubscribe: <{public_url}/unsubscribe/{token}>`
//! (and `List-Unsubscribe-Post` for one-click, RFC 8058), where the token names the profile and
//! the channel and is signed with a key nudge generates once and keeps in KV
//! `NUDGE_SECRETS` (key `unsubscribe`), so every instance checks the links of every other and
//! a link stays valid across restarts. Following it sets the profile's consent for the channel
//! to false through the pipeline, like any `profile.identified` event.

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use nudge_rules::Channel;
use sha2::Sha256;

/// The key in `NUDGE_SECRETS`.
const KEY_NAME: &str = "unsubscribe";
/// Bytes of the signature a token carries: forging one takes 2^128 tries.
const SIGNATURE_BYTES: usize = 16;

/// Makes and checks unsubscribe links.
#[derive(Clone)]
pub struct Unsubscribe {
    key: Vec<u8>,
    /// `{public_url}/unsubscribe/`.
    base: String,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOut {
    pub channel: Channel,
    pub profile_id: String,
}

impl Unsubscribe {
    pub fn new(key: Vec<u8>, public_url: &str) -> Unsubscribe {
        Unsubscribe {
            key,
            base: format!("{}/unsubscribe/", public_url.trim_end_matches('/')),
        }
    }

    /// The key from `secrets`, created by whichever instance comes first.
    pub async fn open(secrets: &kv::Store, public_url: &str) -> anyhow::Result<Unsubscribe> {
        if let Some(key) = secrets.get(KEY_NAME).await? {
            return Ok(Unsubscribe::new(key.to_vec(), public_url));
        }
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        match secrets.create(KEY_NAME, key.clone().into()).await {
            Ok(_) => Ok(Unsubscribe::new(key, public_url)),
            // Another instance created it in between: use theirs.
            Err(_) => match secrets.get(KEY_NAME).await? {
                Some(key) => Ok(Unsubscribe::new(key.to_vec(), public_url)),
                None => anyhow::bail!("{KEY_NAME} key: neither created nor found"),
            },
        }
    }

    fn mac(&self, channel: Channel, profile_id: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(channel.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(profile_id.as_bytes());
        mac
    }

    fn signature(&self, channel: Channel, profile_id: &str) -> Vec<u8> {
        self.mac(channel, profile_id).finalize().into_bytes()[..SIGNATURE_BYTES].to_vec()
    }

    /// `<channel>.<profile id>.<signature>`, each part base64url.
    pub fn token(&self, channel: Channel, profile_id: &str) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(format!("{}\0{profile_id}", channel.as_str())),
            URL_SAFE_NO_PAD.encode(self.signature(channel, profile_id))
        )
    }

    pub fn url(&self, channel: Channel, profile_id: &str) -> String {
        format!("{}{}", self.base, self.token(channel, profile_id))
    }

    /// What `token` opts out of, if nudge signed it.
    pub fn check(&self, token: &str) -> Option<OptOut> {
        let (claim, signature) = token.split_once('.')?;
        let claim = String::from_utf8(URL_SAFE_NO_PAD.decode(claim).ok()?).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if signature.len() != SIGNATURE_BYTES {
            return None;
        }
        let (channel, profile_id) = claim.split_once('\0')?;
        let channel = Channel::parse(channel)?;
        let mac = self.mac(channel, profile_id);
        // Constant time: a timing difference must not reveal how much of a guess was right.
        mac.verify_truncated_left(&signature).ok()?;
        Some(OptOut {
            channel,
            profile_id: profile_id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_its_profile_and_only_nudge_can_make_one() {
        let links = Unsubscribe::new(b"k".repeat(32), "https://nudge.example.com/");
        let url = links.url(Channel::Email, "user-42");
        let token = url
            .strip_prefix("https://nudge.example.com/unsubscribe/")
            .expect("the public URL, without a double slash");
        assert_eq!(
            links.check(token),
            Some(OptOut {
                channel: Channel::Email,
                profile_id: "user-42".into()
            })
        );
        let other_key = Unsubscribe::new(b"x".repeat(32), "https://nudge.example.com");
        assert_eq!(other_key.check(token), None);
        let (claim, signature) = token.split_once('.').unwrap();
        let forged_claim = URL_SAFE_NO_PAD.encode("email\0user-43");
        assert_eq!(links.check(&format!("{forged_claim}.{signature}")), None);
        let short = &signature[..4];
        assert_eq!(links.check(&format!("{claim}.{short}")), None);
        for garbage in ["", ".", "a.b", "%%%.%%%", &format!("{claim}.")] {
            assert_eq!(links.check(garbage), None, "{garbage}");
        }
    }
}
