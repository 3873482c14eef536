//! The permission decision: may a member with this role take this action on this object. Written
//! once here, and once as a table in `docs/access.md` (a test checks the two agree); every REST
//! route and every WebSocket dialect asks [`decide`], never its own rule.
//!
//! Pure: the caller looks up the member's role and the object's facts ([`Target`]) and acts on the
//! [`Decision`]. Rules that need counting (the last owner cannot leave or be demoted) belong to
//! the store that counts; this module answers only what a role permits.

use serde::{Deserialize, Serialize};

/// A member's role in a workspace, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including deleting the workspace and managing other owners.
    Owner,
    /// Runs the workspace: members, invites, settings, every document.
    Admin,
    /// Creates and edits documents.
    Editor,
    /// Reads and comments.
    Commenter,
    /// Reads.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 5] = [Role::Owner, Role::Admin, Role::Editor, Role::Commenter, Role::Viewer];

    /// The role's name as the API and `docs/access.md` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Commenter => "commenter",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `name`, if any.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// Whether a member with this role may write CRDT updates to a document it can read.
    pub fn writes_documents(self) -> bool {
        self <= Role::Editor
    }
}

/// What a member wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the workspace (name, slug) and list its documents.
    ReadWorkspace,
    /// Rename the workspace or change its slug.
    UpdateWorkspace,
    /// Delete the workspace and everything in it.
    DeleteWorkspace,
    /// List the members and their roles.
    ListMembers,
    /// Invite someone (with a role: see [`may_assign`]).
    Invite,
    /// List pending invites.
    ListInvites,
    /// Revoke a pending invite.
    RevokeInvite,
    /// Change another member's role (see [`may_assign`]).
    ChangeRole,
    /// Remove another member (see [`may_assign`]).
    RemoveMember,
    /// Leave the workspace.
    Leave,
    /// Read the workspace's audit log.
    ReadAudit,
    /// Create a document, channel, board or whiteboard.
    CreateDocument,
    /// Read a document's content, its comments and its history.
    ReadDocument,
    /// Add comments and replies, react to messages.
    Comment,
    /// Write to the document's CRDT (every dialect's updates, REST writes).
    EditDocument,
    /// Rename, archive or unarchive a document.
    ManageDocument,
    /// Delete a document.
    DeleteDocument,
    /// Change a private document's member list.
    ShareDocument,
}

impl Action {
    /// Every action, in the order of the table in `docs/access.md`.
    pub const ALL: [Action; 18] = [
        Action::ReadWorkspace,
        Action::UpdateWorkspace,
        Action::DeleteWorkspace,
        Action::ListMembers,
        Action::Invite,
        Action::ListInvites,
        Action::RevokeInvite,
        Action::ChangeRole,
        Action::RemoveMember,
        Action::Leave,
        Action::ReadAudit,
        Action::CreateDocument,
        Action::ReadDocument,
        Action::Comment,
        Action::EditDocument,
        Action::ManageDocument,
        Action::DeleteDocument,
        Action::ShareDocument,
    ];

    /// The action's name as `docs/access.md` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadWorkspace => "read_workspace",
            Action::UpdateWorkspace => "update_workspace",
            Action::DeleteWorkspace => "delete_workspace",
            Action::ListMembers => "list_members",
            Action::Invite => "invite",
            Action::ListInvites => "list_invites",
            Action::RevokeInvite => "revoke_invite",
            Action::ChangeRole => "change_role",
            Action::RemoveMember => "remove_member",
            Action::Leave => "leave",
            Action::ReadAudit => "read_audit",
            Action::CreateDocument => "create_document",
            Action::ReadDocument => "read_document",
            Action::Comment => "comment",
            Action::EditDocument => "edit_document",
            Action::ManageDocument => "manage_document",
            Action::DeleteDocument => "delete_document",
            Action::ShareDocument => "share_document",
        }
    }

    /// Whether the action is on one document (so [`Target`] applies).
    pub fn on_document(self) -> bool {
        matches!(
            self,
            Action::ReadDocument
                | Action::Comment
                | Action::EditDocument
                | Action::ManageDocument
                | Action::DeleteDocument
                | Action::ShareDocument
        )
    }
}

/// The facts about the object acted on that the decision needs. For workspace actions use
/// [`Target::WORKSPACE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target {
    /// The document is private (an explicit member list, as private channels and DMs have).
    pub private: bool,
    /// The member is on that list.
    pub listed: bool,
    /// The member created the document.
    pub creator: bool,
}

impl Target {
    /// The workspace itself, or a document open to every member that the caller did not create.
    pub const WORKSPACE: Target = Target { private: false, listed: false, creator: false };
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// The caller may see the object but not do this (HTTP 403; a read-only WebSocket).
    Forbidden,
    /// The caller may not know the object exists (HTTP 404): not a member of the workspace, or
    /// not on a private document's list.
    Hidden,
}

/// What the role may do, by the table in `docs/access.md`.
enum Grant {
    Yes,
    No,
    /// Only on a document the member created.
    Own,
}

fn grant(role: Role, action: Action) -> Grant {
    use Action as A;
    use Role as R;
    match (action, role) {
        (A::DeleteWorkspace, R::Owner) => Grant::Yes,
        (A::DeleteWorkspace, _) => Grant::No,
        (A::ReadWorkspace | A::ListMembers | A::Leave | A::ReadDocument, _) => Grant::Yes,
        (
            A::UpdateWorkspace
            | A::Invite
            | A::ListInvites
            | A::RevokeInvite
            | A::ChangeRole
            | A::RemoveMember
            | A::ReadAudit,
            role,
        ) => {
            if matches!(role, R::Owner | R::Admin) {
                Grant::Yes
            } else {
                Grant::No
            }
        }
        (A::Comment, R::Viewer) => Grant::No,
        (A::Comment, _) => Grant::Yes,
        (A::CreateDocument | A::EditDocument | A::ManageDocument, role) => {
            if role.writes_documents() {
                Grant::Yes
            } else {
                Grant::No
            }
        }
        (A::DeleteDocument | A::ShareDocument, R::Owner | R::Admin) => Grant::Yes,
        (A::DeleteDocument | A::ShareDocument, R::Editor) => Grant::Own,
        (A::DeleteDocument | A::ShareDocument, _) => Grant::No,
    }
}

/// May a member with `role` (`None`: not a member of the workspace) take `action` on `target`?
///
/// A private document is hidden from every member not on its list, whatever their role: owners
/// and admins manage the workspace, not its private conversations.
pub fn decide(role: Option<Role>, action: Action, target: Target) -> Decision {
    let Some(role) = role else { return Decision::Hidden };
    if action.on_document() && target.private && !target.listed {
        return Decision::Hidden;
    }
    match grant(role, action) {
        Grant::Yes => Decision::Allow,
        Grant::Own if action.on_document() && target.creator => Decision::Allow,
        Grant::Own | Grant::No => Decision::Forbidden,
    }
}

/// May `actor` move a member from `current` to `new` (an invite has no `current`; removal is a
/// move to `None`)? An admin acts only on members below admin and grants at most admin; an owner
/// acts on anyone. Whether the move leaves the workspace without an owner is the store's check.
pub fn may_assign(actor: Role, current: Option<Role>, new: Option<Role>) -> Decision {
    let allowed = match actor {
        Role::Owner => true,
        Role::Admin => {
            current.is_none_or(|role| role > Role::Admin) && new.is_none_or(|role| role >= Role::Admin)
        }
        _ => false,
    };
    if allowed { Decision::Allow } else { Decision::Forbidden }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_and_unlisted_members_do_not_see_private_documents() {
        let private = Target { private: true, listed: false, creator: false };
        assert_eq!(decide(None, Action::ReadWorkspace, Target::WORKSPACE), Decision::Hidden);
        assert_eq!(decide(Some(Role::Owner), Action::ReadDocument, private), Decision::Hidden);
        let listed = Target { listed: true, ..private };
        assert_eq!(decide(Some(Role::Viewer), Action::ReadDocument, listed), Decision::Allow);
        assert_eq!(decide(Some(Role::Viewer), Action::EditDocument, listed), Decision::Forbidden);
        // Privacy is about documents: workspace actions ignore the target's flags.
        assert_eq!(decide(Some(Role::Admin), Action::Invite, private), Decision::Allow);
    }

    #[test]
    fn editors_delete_and_share_only_what_they_created() {
        let mine = Target { creator: true, ..Target::WORKSPACE };
        assert_eq!(decide(Some(Role::Editor), Action::DeleteDocument, mine), Decision::Allow);
        assert_eq!(
            decide(Some(Role::Editor), Action::DeleteDocument, Target::WORKSPACE),
            Decision::Forbidden
        );
        assert_eq!(decide(Some(Role::Commenter), Action::DeleteDocument, mine), Decision::Forbidden);
    }

    #[test]
    fn admins_manage_only_members_below_them() {
        use Role::*;
        assert_eq!(may_assign(Admin, Some(Viewer), Some(Admin)), Decision::Allow);
        assert_eq!(may_assign(Admin, None, Some(Editor)), Decision::Allow);
        assert_eq!(may_assign(Admin, Some(Editor), None), Decision::Allow);
        assert_eq!(may_assign(Admin, Some(Viewer), Some(Owner)), Decision::Forbidden);
        assert_eq!(may_assign(Admin, Some(Admin), Some(Viewer)), Decision::Forbidden);
        assert_eq!(may_assign(Admin, Some(Owner), None), Decision::Forbidden);
        assert_eq!(may_assign(Owner, Some(Owner), Some(Viewer)), Decision::Allow);
        assert_eq!(may_assign(Editor, None, Some(Viewer)), Decision::Forbidden);
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{}\"", role.as_str()));
        }
        assert_eq!(Role::parse("superuser"), None);
    }
}
