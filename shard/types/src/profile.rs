//! Consortium profiles: the TOML files that define members, contracts and service items.
//!
//! A profile names members by code and carries no keys; keys come from the deployment (key
//! files, or [`dev_member_keypair`] for local clusters). The sample profile of the seven
//! licence types and 318 service items is built in: [`Profile::sample`].

use serde::Deserialize;

use crate::contract::{
    Consortium, ConsortiumError, FieldKind, FieldSpec, HolderKind, Item, ItemKind, LicenceType, Member, MemberKind,
};
use crate::crypto::{Keypair, PublicKey};
use crate::ids::{ItemId, LicenceTypeId, MemberId};

/// The sample profile's text.
pub const SAMPLE_PROFILE: &str = include_str!("../../../deploy/profiles/sample.toml");

/// A parsed profile, before keys are attached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name and version.
    pub profile: ProfileHeader,
    /// Members.
    pub members: Vec<ProfileMember>,
    /// Licence types.
    pub licence_types: Vec<ProfileLicenceType>,
    /// Service items.
    pub items: Vec<ProfileItem>,
}

/// `[profile]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileHeader {
    /// Profile name.
    pub name: String,
    /// Profile version.
    pub version: u32,
    /// Distinct admin members whose signatures a governance transaction needs; a majority of
    /// the admins when absent.
    #[serde(default)]
    pub admin_k: Option<u16>,
}

/// `[[members]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileMember {
    /// Dense id from 1.
    pub id: u16,
    /// Stable code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// `city_bureau` or `district`.
    pub kind: ProfileMemberKind,
    /// Consortium admin.
    #[serde(default)]
    pub admin: bool,
}

/// Member kinds as spelled in profiles.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ProfileMemberKind {
    CityBureau,
    District,
}

/// `[[licence_types]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLicenceType {
    /// Dense id from 1.
    pub id: u16,
    /// Stable code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Contract version.
    pub version: u32,
    /// `person` or `enterprise`.
    pub holder: ProfileHolder,
    /// Member codes that may issue.
    pub issuers: Vec<String>,
    /// Endorsements needed besides the issuer.
    pub endorse_k: u8,
    /// Member codes whose signatures endorse.
    #[serde(default)]
    pub endorsers: Vec<String>,
    /// Longest validity; 0 for none.
    pub max_validity_days: u32,
    /// Renewal allowed.
    pub renewable: bool,
    /// The schema.
    pub fields: Vec<ProfileField>,
}

/// Holder kinds as spelled in profiles.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ProfileHolder {
    Person,
    Enterprise,
}

/// One schema field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileField {
    /// snake_case name.
    pub name: String,
    /// `text`, `date`, `integer` or `digest`.
    pub kind: ProfileFieldKind,
    /// Required at issuance.
    pub required: bool,
}

/// Field kinds as spelled in profiles.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ProfileFieldKind {
    Text,
    Date,
    Integer,
    Digest,
}

/// `[[items]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileItem {
    /// Dense id from 1.
    pub id: u16,
    /// Stable code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// `enterprise` or `personal`.
    pub kind: ProfileItemKind,
    /// Licence fields the item may request.
    pub needs: Vec<ProfileNeed>,
}

/// Item kinds as spelled in profiles.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ProfileItemKind {
    Enterprise,
    Personal,
}

/// The fields of one licence type an item may request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileNeed {
    /// Licence type code.
    pub licence: String,
    /// Field names.
    pub fields: Vec<String>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not valid TOML or not of the profile's shape.
    #[error("profile is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A code names nothing.
    #[error("{context} names unknown {what} `{code}`")]
    Unknown {
        /// Where.
        context: String,
        /// Member, licence type or field.
        what: &'static str,
        /// The code.
        code: String,
    },
    /// The assembled consortium breaks a rule.
    #[error(transparent)]
    Consortium(#[from] ConsortiumError),
}

/// The development key pair of a member: derived from its code, so every process of a local
/// cluster agrees on it without sharing files. Never use outside development.
pub fn dev_member_keypair(code: &str) -> Keypair {
    Keypair::dev(&format!("member/{code}"))
}

impl Profile {
    /// Parse profile text.
    pub fn parse(text: &str) -> Result<Self, ProfileError> {
        Ok(toml::from_str(text)?)
    }

    /// The built-in sample profile.
    pub fn sample() -> Self {
        Self::parse(SAMPLE_PROFILE).expect("the built-in sample profile parses")
    }

    /// Attach keys and resolve codes. `keys(code)` gives a member's signing and encryption
    /// public keys.
    pub fn into_consortium(
        self,
        mut keys: impl FnMut(&str) -> (PublicKey, [u8; 32]),
    ) -> Result<Consortium, ProfileError> {
        let member_id =
            |context: &str, code: &str| -> Result<MemberId, ProfileError> {
                self.members.iter().find(|m| m.code == code).map(|m| MemberId(m.id)).ok_or_else(|| {
                    ProfileError::Unknown { context: context.to_string(), what: "member", code: code.to_string() }
                })
            };
        let members = self
            .members
            .iter()
            .map(|m| {
                let (signing_key, encryption_key) = keys(&m.code);
                Member {
                    id: MemberId(m.id),
                    code: m.code.clone(),
                    name: m.name.clone(),
                    kind: match m.kind {
                        ProfileMemberKind::CityBureau => MemberKind::CityBureau,
                        ProfileMemberKind::District => MemberKind::District,
                    },
                    admin: m.admin,
                    signing_key,
                    encryption_key,
                }
            })
            .collect();
        let mut licence_types = Vec::with_capacity(self.licence_types.len());
        for t in &self.licence_types {
            let ctx = format!("licence type {}", t.code);
            licence_types.push(LicenceType {
                id: LicenceTypeId(t.id),
                code: t.code.clone(),
                name: t.name.clone(),
                version: t.version,
                holder: match t.holder {
                    ProfileHolder::Person => HolderKind::Person,
                    ProfileHolder::Enterprise => HolderKind::Enterprise,
                },
                issuers: t.issuers.iter().map(|c| member_id(&ctx, c)).collect::<Result<_, _>>()?,
                endorse_k: t.endorse_k,
                endorsers: t.endorsers.iter().map(|c| member_id(&ctx, c)).collect::<Result<_, _>>()?,
                max_validity_days: t.max_validity_days,
                renewable: t.renewable,
                fields: t
                    .fields
                    .iter()
                    .map(|f| FieldSpec {
                        name: f.name.clone(),
                        kind: match f.kind {
                            ProfileFieldKind::Text => FieldKind::Text,
                            ProfileFieldKind::Date => FieldKind::Date,
                            ProfileFieldKind::Integer => FieldKind::Integer,
                            ProfileFieldKind::Digest => FieldKind::Digest,
                        },
                        required: f.required,
                    })
                    .collect(),
            });
        }
        let mut items = Vec::with_capacity(self.items.len());
        for it in &self.items {
            let ctx = format!("item {}", it.code);
            let mut needs = Vec::with_capacity(it.needs.len());
            for n in &it.needs {
                let t = licence_types.iter().find(|t| t.code == n.licence).ok_or_else(|| ProfileError::Unknown {
                    context: ctx.clone(),
                    what: "licence type",
                    code: n.licence.clone(),
                })?;
                let mut mask = 0u64;
                for f in &n.fields {
                    let i = t.field_index(f).ok_or_else(|| ProfileError::Unknown {
                        context: ctx.clone(),
                        what: "field",
                        code: format!("{}.{f}", t.code),
                    })?;
                    mask |= 1 << i;
                }
                needs.push((t.id, mask));
            }
            items.push(Item {
                id: ItemId(it.id),
                code: it.code.clone(),
                name: it.name.clone(),
                kind: match it.kind {
                    ProfileItemKind::Enterprise => ItemKind::Enterprise,
                    ProfileItemKind::Personal => ItemKind::Personal,
                },
                needs,
            });
        }
        let consortium = Consortium::new(self.profile.name.clone(), members, licence_types, items)?;
        Ok(match self.profile.admin_k {
            Some(k) => consortium.with_admin_k(k)?,
            None => consortium,
        })
    }

    /// The consortium with development keys for every member.
    pub fn into_dev_consortium(self) -> Result<Consortium, ProfileError> {
        self.into_consortium(|code| {
            let kp = dev_member_keypair(code);
            (kp.public(), kp.encryption_public())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decode, Encode};

    #[test]
    fn sample_profile_has_the_sources_shape() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        assert!((58..=64).contains(&c.members.len()), "about 60 members");
        let codes: Vec<_> = c.licence_types.iter().map(|t| t.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "business_licence",
                "resident_id_card",
                "household_register",
                "residence_permit",
                "driver_licence",
                "marriage_certificate",
                "divorce_certificate"
            ]
        );
        let enterprise = c.items.iter().filter(|i| i.kind == ItemKind::Enterprise).count();
        let personal = c.items.iter().filter(|i| i.kind == ItemKind::Personal).count();
        assert_eq!((enterprise, personal), (253, 65));
        assert!(c.items.iter().all(|i| !i.needs.is_empty() && i.needs.iter().all(|(_, m)| *m != 0)));
    }

    #[test]
    fn consortium_encoding_round_trips() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        let bytes = c.to_bytes();
        assert_eq!(Consortium::from_bytes(&bytes).unwrap(), c);
    }

    #[test]
    fn unknown_member_code_is_named() {
        let mut p = Profile::sample();
        p.licence_types[0].issuers = vec!["no-such-bureau".into()];
        let err = p.into_dev_consortium().unwrap_err().to_string();
        assert!(err.contains("no-such-bureau"), "{err}");
    }

    #[test]
    fn admin_threshold_comes_from_the_profile_or_is_a_majority() {
        let c = Profile::sample().into_dev_consortium().unwrap();
        assert_eq!((c.admins().count(), c.admin_k), (5, 3));
        let mut p = Profile::sample();
        p.profile.admin_k = None;
        p.members.iter_mut().filter(|m| m.admin).take(1).for_each(|m| m.admin = false);
        let c = p.into_dev_consortium().unwrap();
        assert_eq!((c.admins().count(), c.admin_k), (4, 3), "a majority of four is three");
        for k in [0, 6] {
            let text = SAMPLE_PROFILE.replace("admin_k = 3", &format!("admin_k = {k}"));
            let err = Profile::parse(&text).unwrap().into_dev_consortium().unwrap_err().to_string();
            assert!(err.contains("admin_k"), "{err}");
        }
        let c = Profile::sample().into_dev_consortium().unwrap();
        assert_eq!(c.clone().with_admin_k(5).unwrap().admin_k, 5);
        let mut none = Profile::sample();
        none.members.iter_mut().for_each(|m| m.admin = false);
        none.profile.admin_k = None;
        assert!(none.into_dev_consortium().unwrap_err().to_string().contains("admin"));
    }

    #[test]
    fn unknown_keys_in_a_profile_are_refused() {
        let text = SAMPLE_PROFILE.replace("[profile]\n", "[profile]\ncolour = \"red\"\n");
        assert!(Profile::parse(&text).unwrap_err().to_string().contains("colour"));
    }
}
