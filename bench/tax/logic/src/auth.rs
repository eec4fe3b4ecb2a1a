//! auth: verifies the bearer token and says who the customer is.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::kv::{Kv, UserRecord, get_json, keys};
use crate::model::{AuthRequest, AuthResponse};
use crate::{ServiceError, hex};

type HmacSha256 = Hmac<Sha256>;

const MAX_TOKEN_LEN: usize = 256;

/// A token for `user_id` valid until `expires_at`: `USER.EXPIRES.HEX(HMAC-SHA256(key, "USER.EXPIRES"))`.
pub fn issue_token(user_id: &str, expires_at: u64, key: &[u8]) -> String {
    let payload = format!("{user_id}.{expires_at}");
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    format!("{payload}.{}", hex::encode(&mac.finalize().into_bytes()))
}

pub fn auth(req: &AuthRequest, kv: &dyn Kv) -> Result<AuthResponse, ServiceError> {
    let refused = || ServiceError::unauthorized("invalid token");
    if req.token.len() > MAX_TOKEN_LEN {
        return Err(refused());
    }
    let (payload, signature) = req.token.rsplit_once('.').ok_or_else(refused)?;
    let (user_id, expires_at) = payload.split_once('.').ok_or_else(refused)?;
    let expires_at: u64 = expires_at.parse().map_err(|_| refused())?;
    if user_id.is_empty() || !user_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(refused());
    }
    let signature = hex::decode(signature).ok_or_else(refused)?;

    let user: UserRecord = get_json(kv, &keys::user(user_id))?.ok_or_else(refused)?;
    let key = hex::decode(&user.token_key)
        .ok_or_else(|| ServiceError::internal(format!("corrupt token key of user {user_id}")))?;
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&signature).map_err(|_| refused())?;
    if expires_at < req.at {
        return Err(ServiceError::unauthorized("token expired"));
    }
    Ok(AuthResponse {
        user_id: user.id,
        display_name: user.name,
        email: user.email,
        tier: user.tier,
    })
}
